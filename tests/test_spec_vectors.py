"""docs/bytecode.md pinned to the code: its worked example, vectors and tables cannot drift.

Vectors in the document follow a marker line ``<!-- vector: NAME -->`` (a fenced block) or
``<!-- table: NAME -->`` / ``<!-- vector: NAME -->`` (a Markdown table).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from hotswap.cam import limits
from hotswap.cam.disasm import disassemble
from hotswap.cam.instructions import Opcode
from hotswap.cam.module import decode_module, encode_module, module_identity
from hotswap.cam.values import decode_value, encode_value, value_decoder, value_encoder
from hotswap.cam.verify_module import verify_module
from hotswap.examples.handbuilt import COUNTER_OUTPUT, counter_module
from hotswap.lang.terms import Op
from hotswap.lang.types import BOOL, INT, STR, UNIT, ListT, MapT, Prod, Sum, Type
from hotswap.lang.values import parse, render

DOC = Path(__file__).resolve().parent.parent / "docs" / "bytecode.md"


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _after_marker(marker: str) -> list[str]:
    lines = _doc().splitlines()
    tag = f"<!-- {marker} -->"
    hits = [i for i, line in enumerate(lines) if line.strip() == tag]
    assert len(hits) == 1, f"expected exactly one {tag!r} in {DOC.name}, found {len(hits)}"
    return lines[hits[0] + 1 :]


def _block(name: str) -> str:
    """The fenced block that follows ``<!-- vector: name -->``."""
    lines = _after_marker(f"vector: {name}")
    while lines and not lines[0].strip():
        lines = lines[1:]
    assert lines and lines[0].startswith("```"), f"no fenced block after vector {name!r}"
    body: list[str] = []
    for line in lines[1:]:
        if line.startswith("```"):
            return "\n".join(body)
        body.append(line)
    raise AssertionError(f"unterminated fenced block after vector {name!r}")


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip().replace("\\|", "|").strip("`") for p in parts]


def _table(marker: str) -> list[list[str]]:
    """The rows (without header and separator) of the table after ``<!-- marker -->``."""
    lines = _after_marker(marker)
    while lines and not lines[0].strip():
        lines = lines[1:]
    rows: list[list[str]] = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append(_cells(line))
    assert len(rows) > 2, f"no table after {marker!r}"
    return rows[2:]


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


_TYPE_TOKEN = re.compile(r"\s*(\(|\)|x|\+|Unit|Int|Bool|Str|List|Map)")


def _parse_type(text: str) -> Type:
    """Parse the reference rendering of a type: ``Unit``, ``Int``, ``Bool``, ``(A x B)``, ..."""
    tokens: list[str] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _TYPE_TOKEN.match(text, pos)
        assert m is not None, f"bad type {text!r}"
        tokens.append(m.group(1))
        pos = m.end()

    def parse_at(i: int) -> tuple[Type, int]:
        tok = tokens[i]
        if tok == "(" and tokens[i + 1] == "List":
            elem, i = parse_at(i + 2)
            assert tokens[i] == ")", f"bad type {text!r}"
            return ListT(elem), i + 1
        if tok == "(" and tokens[i + 1] == "Map":
            key, i = parse_at(i + 2)
            value, i = parse_at(i)
            assert tokens[i] == ")", f"bad type {text!r}"
            return MapT(key, value), i + 1
        if tok == "(":
            left, i = parse_at(i + 1)
            op = tokens[i]
            right, i = parse_at(i + 1)
            assert tokens[i] == ")", f"bad type {text!r}"
            return (Prod(left, right) if op == "x" else Sum(left, right)), i + 1
        return {"Unit": UNIT, "Int": INT, "Bool": BOOL, "Str": STR}[tok], i + 1

    t, end = parse_at(0)
    assert end == len(tokens), f"bad type {text!r}"
    assert str(t) == text, f"{text!r} is not the canonical rendering {t}"
    return t


# --- the worked example -------------------------------------------------------------------


def test_counter_module_bytes_match_the_document() -> None:
    assert encode_module(counter_module()).hex() == _hex(_block("counter-module")).hex()


def test_counter_identity_matches_the_document() -> None:
    data = _hex(_block("counter-module"))
    identity = _block("counter-identity").strip()
    assert module_identity(data) == identity
    assert hashlib.sha256(data).hexdigest() == identity  # no custom section: all the bytes


def test_custom_section_leaves_the_counter_identity_unchanged() -> None:
    data = _hex(_block("counter-module"))
    extended = data + bytes.fromhex("000301 61 ff")
    assert decode_module(extended).custom == (("a", b"\xff"),)
    assert module_identity(extended) == _block("counter-identity").strip()


def test_counter_annotated_listing_matches_the_bytes() -> None:
    """The first column of the annotated listing, read as hex, is the module."""
    raw = ""
    for line in _block("counter-annotated").splitlines():
        m = re.match(r"\s*((?:[0-9a-f]{2} )*[0-9a-f]{2})(?:\s{2,}|$)", line)
        assert m is not None, f"annotated line without bytes: {line!r}"
        raw += m.group(1)
    assert _hex(raw) == encode_module(counter_module())


def test_counter_disassembly_matches_the_document() -> None:
    data = encode_module(counter_module())
    assert disassemble(decode_module(data), data) == _block("counter-disassembly")


def test_counter_verification_results_match_the_document() -> None:
    info = verify_module(counter_module())
    assert [(f.max_stack, f.max_steps) for f in info.functions] == [(0, 1), (2, 18)]
    text = _doc()
    assert "`init`: `max_stack` 0, `max_steps` 1" in text
    assert "`step`: `max_stack` 2, `max_steps` 18" in text


def test_counter_output_encodings() -> None:
    assert encode_value((0, ()), COUNTER_OUTPUT) == b"\x00"
    assert encode_value((1, 2), COUNTER_OUTPUT) == b"\x01\x02"


# --- types and values ---------------------------------------------------------------------


def test_leaf_type_digests() -> None:
    assert UNIT.identity == hashlib.sha256(b"\x00").hexdigest()
    assert INT.identity == hashlib.sha256(b"\x01").hexdigest()
    assert UNIT.identity == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert INT.identity == "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a"


def test_compound_type_digests_are_merkle() -> None:
    pair = Prod(INT, BOOL)
    assert pair.digest == hashlib.sha256(b"\x02" + INT.digest + BOOL.digest).digest()
    assert BOOL.digest == hashlib.sha256(b"\x03" + UNIT.digest + UNIT.digest).digest()


def test_type_digest_table() -> None:
    rows = _table("vector: type-digests")
    assert {row[0] for row in rows} >= {"Unit", "Int", "Bool"}
    for name, identity in rows:
        assert _parse_type(name).identity == identity, name


def test_value_vectors() -> None:
    rows = _table("vector: values")
    assert len(rows) >= 10
    for type_text, value_text, hex_text in rows:
        t = _parse_type(type_text)
        expected = b"" if hex_text == "(empty)" else _hex(hex_text)
        v = parse(value_text, t)
        assert encode_value(v, t) == expected, value_text
        assert decode_value(expected, t) == v, value_text
        assert value_encoder(t)(v) == expected, value_text
        assert value_decoder(t)(expected) == v, value_text
        assert render(v, t) == value_text


@pytest.mark.parametrize(
    ("v", "t", "expected"),
    [(-1, INT, b"\x7f"), (64, INT, b"\xc0\x00"), ((1, 1), Sum(UNIT, INT), b"\x01\x01")],
)
def test_value_encodings_named_in_the_brief(v: object, t: Type, expected: bytes) -> None:
    assert encode_value(v, t) == expected


# --- tables -------------------------------------------------------------------------------


def test_opcode_table_lists_every_opcode_with_its_byte() -> None:
    rows = _table("table: opcodes")
    table = {row[1]: int(row[0], 16) for row in rows}
    assert table == {op.name: op.value for op in Opcode}


def test_primitive_table_lists_every_primitive_with_its_byte() -> None:
    rows = _table("table: primitives")
    table = {row[1]: int(row[0], 16) for row in rows}
    assert table == {op.name: op.value for op in Op}
    assert all(row[2] == row[1].lower() for row in rows)


def test_every_opcode_and_primitive_name_appears_in_the_document() -> None:
    text = _doc()
    for name in [op.name for op in Opcode] + [op.name for op in Op]:
        assert f"`{name}`" in text, name


def test_limits_table_matches_the_code() -> None:
    rows = _table("table: limits")
    documented = {row[0]: int(row[1]) for row in rows}
    actual = {
        name: value
        for name, value in vars(limits).items()
        if name.startswith("MAX_") and isinstance(value, int)
    }
    assert documented == actual
