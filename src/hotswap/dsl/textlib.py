"""Methods of ``str`` that have no primitive, written in the DSL itself.

``s.split(sep)`` in a machine compiles to an inlined call of :func:`split_on` (``s`` first,
then the arguments, as Python evaluates them): each function here is plain Python within the
DSL's subset, and means exactly what the ``str`` method means, which the tests check against
Python's own methods. Whitespace is Python's (``str.isspace``), all of Unicode's.
"""

from __future__ import annotations

#: Every character ``str.isspace`` holds true for, as ``str.split()`` and ``str.strip()`` do.
WHITESPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


def split_on(s: str, sep: str) -> list[str]:
    """``s.split(sep)``."""
    if sep == "":
        raise ValueError("empty separator")
    parts: list[str] = []
    start = 0
    n = len(sep)
    for i in range(len(s)):
        if i >= start and s[i : i + n] == sep:
            parts.append(s[start:i])
            start = i + n
    parts.append(s[start:])
    return parts


def split_whitespace(s: str) -> list[str]:
    """``s.split()``: runs of whitespace separate, and none is kept."""
    parts: list[str] = []
    word = ""
    for ch in s:
        if ch in WHITESPACE:
            if word:
                parts.append(word)
            word = ""
        else:
            word += ch
    if word:
        parts.append(word)
    return parts


def _start(s: str, chars: str) -> int:
    start = 0
    for ch in s:
        if ch not in chars:
            break
        start += 1
    return start


def _end(s: str, chars: str) -> int:
    end = len(s)
    for ch in reversed(list(s)):
        if ch not in chars:
            break
        end -= 1
    return end


def strip_chars(s: str, chars: str) -> str:
    """``s.strip(chars)``."""
    start = _start(s, chars)
    if start == len(s):
        return ""
    return s[start : _end(s, chars)]


def lstrip_chars(s: str, chars: str) -> str:
    """``s.lstrip(chars)``."""
    return s[_start(s, chars) :]


def rstrip_chars(s: str, chars: str) -> str:
    """``s.rstrip(chars)``."""
    return s[: _end(s, chars)]


def strip(s: str) -> str:
    """``s.strip()``."""
    return strip_chars(s, WHITESPACE)


def lstrip(s: str) -> str:
    """``s.lstrip()``."""
    return lstrip_chars(s, WHITESPACE)


def rstrip(s: str) -> str:
    """``s.rstrip()``."""
    return rstrip_chars(s, WHITESPACE)


def find(s: str, sub: str) -> int:
    """``s.find(sub)``: the first index of ``sub``, or -1."""
    n = len(sub)
    for i in range(len(s) - n + 1):
        if s[i : i + n] == sub:
            return i
    return -1


def count(s: str, sub: str) -> int:
    """``s.count(sub)``: non-overlapping occurrences."""
    if sub == "":
        return len(s) + 1
    return len(split_on(s, sub)) - 1


def replace(s: str, old: str, new: str) -> str:
    """``s.replace(old, new)``: every non-overlapping ``old``, left to right."""
    if old == "":
        return new + new.join(list(s)) + new if s else new
    return new.join(split_on(s, old))


#: The methods compiled by a call of a function here, by name and number of arguments.
METHODS = {
    ("split", 0): split_whitespace,
    ("split", 1): split_on,
    ("strip", 0): strip,
    ("strip", 1): strip_chars,
    ("lstrip", 0): lstrip,
    ("lstrip", 1): lstrip_chars,
    ("rstrip", 0): rstrip,
    ("rstrip", 1): rstrip_chars,
    ("find", 1): find,
    ("count", 1): count,
    ("replace", 2): replace,
}
