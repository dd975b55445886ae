"""Principals, roles and tokens: who may read, send to or change the code of a node's machines.

A *principal* is a name with roles; it proves itself with a *token*, a random secret the node
stores only as its SHA-256 (a token has 256 bits of entropy, so a fast hash is enough: there is
no password to guess). Roles, each allowing what the ones before it allow:

- ``read``: status, machines, instances, history, modules, types;
- ``send``: inputs (``send``, ``send_checked``, dry runs);
- ``upgrade``: changes of code (upgrade, release, rollback, deploy, trial, confirm, revert,
  delete of an instance);
- ``admin``: everything, including managing principals.

Tokens look like ``hst_<8 hex of the principal's id>_<43 characters of base64url>``: the prefix
lets a secret scanner find leaked ones and lets a node say which principal a refused token
claimed to be, without revealing anything.

A principal may instead prove itself with a client certificate (mutual TLS, ``--tls-ca``):
one added with ``certificate`` authenticates as the verified certificate whose subject common
name is its name, and has no token.

The credentials file (``credentials.json`` in a node's data directory, mode 0600) holds::

    {"version": 1, "principals": [{"name": "ci", "roles": ["send"], "sha256": "<hex>"},
                                  {"name": "deployer", "roles": ["upgrade"], "certificate": true}]}
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from hotswap.errors import HotswapError

__all__ = [
    "LOCAL_TOKEN",
    "ROLES",
    "CredentialProblem",
    "Credentials",
    "Principal",
    "allows",
    "new_token",
]

ROLES = ("read", "send", "upgrade", "admin")
#: The file in a node's data directory (``--auth``) holding a token for clients on its machine.
LOCAL_TOKEN = "client.token"
TOKEN_PREFIX = "hst_"
FILE_VERSION = 1
#: A token is refused unread past this many characters (a request's bound before it is
#: authorised).
MAX_TOKEN = 128
MAX_NAME = 64


class CredentialProblem(HotswapError):
    """A credentials file or a principal that cannot be used, and why."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    roles: frozenset[str]

    def may(self, role: str) -> bool:
        return allows(self.roles, role)


def allows(roles: frozenset[str] | set[str], role: str) -> bool:
    """Whether holding ``roles`` allows what ``role`` allows (each role includes those before
    it in :data:`ROLES`)."""
    if role not in ROLES:
        raise CredentialProblem(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    needed = ROLES.index(role)
    return any(ROLES.index(r) >= needed for r in roles if r in ROLES)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(name: str) -> str:
    """A fresh token for the principal ``name``."""
    tag = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{TOKEN_PREFIX}{tag}_{secrets.token_urlsafe(32)}"


def _check_principal(name: object, roles: object, where: str) -> tuple[str, frozenset[str]]:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        msg = f"{where}: a principal's name is 1 to {MAX_NAME} printable characters"
        raise CredentialProblem(msg)
    if not isinstance(roles, list | tuple | set | frozenset) or not roles:
        raise CredentialProblem(f"{where}: {name} needs at least one role of {', '.join(ROLES)}")
    for role in roles:
        if role not in ROLES:
            msg = f"{where}: unknown role {role!r} for {name}: one of {', '.join(ROLES)}"
            raise CredentialProblem(msg)
    return name, frozenset(roles)


class Credentials:
    """The principals a node knows, by the hash of their tokens."""

    def __init__(
        self,
        entries: dict[str, Principal] | None = None,
        certified: dict[str, Principal] | None = None,
    ) -> None:
        self._by_digest: dict[str, Principal] = dict(entries or {})
        #: Principals who authenticate by a client certificate, by its common name.
        self._by_cert: dict[str, Principal] = dict(certified or {})
        #: The file these were loaded from (:meth:`refresh` reads it again), and its stamp.
        self.path: Path | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._refused: tuple[int, int, int] | None = None
        #: Counts the reloads that changed something: a connection authenticated at another
        #: version authenticates again before its next request.
        self.version = 0

    def __len__(self) -> int:
        return len(self._by_digest) + len(self._by_cert)

    @property
    def principals(self) -> list[Principal]:
        every = [*self._by_digest.values(), *self._by_cert.values()]
        return sorted(every, key=lambda p: p.name)

    def refresh(self) -> bool:
        """Read the file again if it changed since it was read (``hotswap token`` wrote it);
        whether it had. A file that does not load raises :class:`CredentialProblem` and
        changes nothing; a removed file leaves no principal (nobody gets in)."""
        if self.path is None:
            return False
        stamp = _stamp(self.path)
        if stamp in (self._stamp, self._refused):
            return False
        try:
            fresh = Credentials.load(self.path)
        except CredentialProblem:
            self._refused = stamp  # said once; the next change of the file is read again
            raise
        self._by_digest, self._by_cert = fresh._by_digest, fresh._by_cert
        self._stamp = fresh._stamp
        self.version += 1
        return True

    def by_certificate(self, name: str) -> bool:
        """Whether ``name`` authenticates by a client certificate."""
        return name in self._by_cert

    def certified(self, common_name: str | None) -> Principal | None:
        """The principal a verified client certificate with this common name is, or None."""
        return None if common_name is None else self._by_cert.get(common_name)

    def add_certified(self, name: str, roles: list[str] | tuple[str, ...]) -> None:
        """Add (or change the roles of) a principal who authenticates by a client certificate
        whose subject common name is ``name``."""
        name, checked = _check_principal(name, list(roles), "principal")
        self._by_cert[name] = Principal(name, checked)

    def authenticate(self, token: object) -> Principal | None:
        """The principal ``token`` belongs to, or None."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN:
            return None
        return self._by_digest.get(_digest(token))

    def add(self, name: str, roles: list[str] | tuple[str, ...]) -> str:
        """Add a principal (or a second token for one); returns its new token, which is shown
        once and never stored."""
        name, checked = _check_principal(name, list(roles), "principal")
        token = new_token(name)
        self._by_digest[_digest(token)] = Principal(name, checked)
        return token

    def revoke(self, name: str) -> int:
        """Remove every token of ``name``; how many there were."""
        gone = [d for d, p in self._by_digest.items() if p.name == name]
        for d in gone:
            del self._by_digest[d]
        return len(gone) + (self._by_cert.pop(name, None) is not None)

    # -- the file ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Credentials:
        stamp = _stamp(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            empty = cls()
            empty.path = path
            return empty
        except (OSError, UnicodeDecodeError) as e:
            raise CredentialProblem(f"cannot read {path}: {e}") from None
        mode = os.stat(path).st_mode & 0o077
        if mode:
            msg = f"{path} can be read by others (mode {oct(mode)}): run `chmod 600 {path}`"
            raise CredentialProblem(msg)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise CredentialProblem(f"{path} is not JSON: {e}") from None
        if not isinstance(doc, dict) or doc.get("version") != FILE_VERSION:
            msg = f"{path}: expected a credentials file of version {FILE_VERSION}"
            raise CredentialProblem(msg)
        entries: dict[str, Principal] = {}
        certified: dict[str, Principal] = {}
        listed = doc.get("principals")
        if not isinstance(listed, list):
            raise CredentialProblem(f"{path}: `principals` must be a list")
        for i, entry in enumerate(listed):
            where = f"{path}: principals[{i}]"
            if not isinstance(entry, dict):
                raise CredentialProblem(f"{where} must be an object")
            name, roles = _check_principal(entry.get("name"), entry.get("roles"), where)
            if entry.get("certificate") is True and "sha256" not in entry:
                certified[name] = Principal(name, roles)
                continue
            digest = entry.get("sha256")
            if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
                raise CredentialProblem(f"{where}: `sha256` must be 64 hex digits")
            entries[digest] = Principal(name, roles)
        loaded = cls(entries, certified)
        loaded.path, loaded._stamp = path, stamp
        return loaded

    def save(self, path: Path) -> None:
        """Write the file atomically, mode 0600."""
        doc = {
            "version": FILE_VERSION,
            "principals": [
                {"name": p.name, "roles": sorted(p.roles, key=ROLES.index), "sha256": d}
                for d, p in sorted(self._by_digest.items(), key=lambda e: (e[1].name, e[0]))
            ]
            + [
                {"name": p.name, "roles": sorted(p.roles, key=ROLES.index), "certificate": True}
                for _, p in sorted(self._by_cert.items())
            ],
        }
        if not path.parent.exists():  # a data directory made before the node's first start
            path.parent.mkdir(mode=0o700, parents=True)
        partial = path.with_name(path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(doc, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from another: its inode, size and change time."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return text == text.lower()
