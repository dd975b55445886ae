"""Signed changes of code: Ed25519 signatures over what an upgrade installs and where.

A node that trusts keys (``hotswap node --trust KEYFILE``) accepts a change of a machine's code
(an upgrade, a release, a rollback, a deploy) only with a signature, by one of those keys, over
a :class:`Claim`: the action, the machine, the code it expects to replace (its identity and its
generation, the number of changes the machine has had), the new code's identity and the
migration's. A stolen credential alone cannot install code, and a signed change cannot be
replayed: once applied, the machine's generation has moved on, and the old claim names the
wrong one.

The signed bytes are a canonical CBOR array (:func:`claim_bytes`), so another implementation
signs and checks the same bytes (docs/protocol.md, "Signed changes"). Keys:

- a private key is a PKCS#8 PEM file, written with mode 0600 (:func:`write_private_key`);
- a public key is one line, ``hotswap-ed25519 <base64 of the 32 raw bytes> [comment]``, so a
  trust file can list several, one per line, with ``#`` comments.

A key is named by its *key id*: the first 16 hex digits of the SHA-256 of its 32 raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hotswap.errors import HotswapError

__all__ = [
    "ACTIONS",
    "Claim",
    "ReleaseClaim",
    "SignatureProblem",
    "TrustedKeys",
    "claim_bytes",
    "digest",
    "generate_key",
    "key_id",
    "public_line",
    "read_private_key",
    "sign",
    "write_private_key",
]

#: What a signature can allow (a rollback is an upgrade; a release signs one claim per machine,
#: all together, as a :class:`ReleaseClaim`).
ACTIONS = ("upgrade", "deploy", "release")
#: The first element of every signed array: the format, so that no other message signed with
#: the same key can pass for a claim.
DOMAIN = "hotswap/signed-change/1"
PUBLIC_PREFIX = "hotswap-ed25519"
SIGNATURE_BYTES = 64


class SignatureProblem(HotswapError):
    """A key that does not load, or a signature that does not allow the change."""


#: How many generations back a refused signature is tried, to tell a replay by its message.
REPLAY_LOOKBACK = 4


@dataclass(frozen=True, slots=True)
class Claim:
    """What a signature allows: ``action`` on ``machine``, replacing the code ``expected`` (a
    module identity; empty for a deploy) at ``generation``, with the module whose bytes hash to
    ``code`` and the migration whose bytes hash to ``migration`` (:func:`digest`, over the
    whole bytes, names and other custom sections included; empty for none), and the upgrade's
    options as the request gives them."""

    action: str
    machine: str
    expected: str
    generation: int
    code: str
    migration: str = ""
    rename: bool = False
    trial: int = 0
    trial_seconds: int = 0
    check_all: bool = False

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            msg = f"unknown action {self.action!r}: one of {', '.join(ACTIONS)}"
            raise SignatureProblem(msg)
        if not 0 <= self.generation < 2**63:
            raise SignatureProblem(f"generation {self.generation} is out of range")


@dataclass(frozen=True, slots=True)
class ReleaseClaim:
    """What one signature over a release allows: every item's upgrade (each a :class:`Claim`
    of action ``release``, without options), together and only together, in machine order. A
    part of a signed release is not signed: neither as a smaller release nor as an upgrade."""

    items: tuple[Claim, ...]

    def __post_init__(self) -> None:
        if not self.items:
            raise SignatureProblem("a release claim names at least one machine")
        if any(item.action != "release" for item in self.items):
            raise SignatureProblem("every item of a release claim has the action 'release'")
        names = [item.machine for item in self.items]
        if names != sorted(set(names)):
            raise SignatureProblem("a release claim's machines are distinct, in name order")


def digest(data: bytes) -> str:
    """What a claim names module bytes by: the hex SHA-256 of all of them. Not the module's
    identity, which leaves out its custom sections: a signature must also cover the names, or
    the names of a signed module could be changed (``Incr`` shown as ``Count``) under it."""
    return hashlib.sha256(data).hexdigest()


def claim_bytes(claim: Claim | ReleaseClaim) -> bytes:
    """The bytes signed: ``[DOMAIN, action, machine, expected, generation, code, migration,
    rename, trial, trial_seconds, check_all]`` in canonical CBOR (definite lengths, shortest
    integers; text strings as UTF-8; booleans as CBOR true and false); for a release,
    ``[DOMAIN, "release", [[machine, expected, generation, code, migration], ...]]``."""
    if isinstance(claim, ReleaseClaim):
        items = [[i.machine, i.expected, i.generation, i.code, i.migration] for i in claim.items]
        return cbor2.dumps([DOMAIN, "release", items], canonical=True)
    return cbor2.dumps(
        [
            DOMAIN,
            claim.action,
            claim.machine,
            claim.expected,
            claim.generation,
            claim.code,
            claim.migration,
            claim.rename,
            claim.trial,
            claim.trial_seconds,
            claim.check_all,
        ],
        canonical=True,
    )


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_line(public: Ed25519PublicKey, comment: str = "") -> str:
    """The public key as one line of a trust file."""
    text = f"{PUBLIC_PREFIX} {base64.b64encode(_raw(public)).decode('ascii')}"
    comment = " ".join(comment.split())  # one line, whatever was given
    return f"{text} {comment}" if comment else text


def write_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    """Write ``key`` to a new file ``path`` (mode 0600); refuses to replace an existing file."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        msg = f"{path} exists: choose another file, or remove it if you mean to replace the key"
        raise SignatureProblem(msg) from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SignatureProblem(f"cannot read the private key {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        msg = f"{path} is not an unencrypted PEM private key (made by `hotswap keygen`): {e}"
        raise SignatureProblem(msg) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureProblem(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def sign(key: Ed25519PrivateKey, claim: Claim | ReleaseClaim) -> bytes:
    return key.sign(claim_bytes(claim))


def parse_public_line(line: str, where: str = "key") -> Ed25519PublicKey:
    parts = line.split()
    if len(parts) < 2 or parts[0] != PUBLIC_PREFIX:
        msg = f"{where}: expected `{PUBLIC_PREFIX} <base64 key> [comment]`, got {line[:60]!r}"
        raise SignatureProblem(msg)
    try:
        raw = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureProblem(f"{where}: the key is not valid base64") from None
    if len(raw) != 32:
        raise SignatureProblem(f"{where}: an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


class TrustedKeys:
    """The public keys a node accepts signed changes from."""

    def __init__(self, keys: list[Ed25519PublicKey]) -> None:
        self._keys = {key_id(k): k for k in keys}

    @classmethod
    def from_files(cls, paths: list[Path]) -> TrustedKeys:
        """Keys from trust files: one public line each, blank lines and ``#`` comments skipped.
        A file without a key is refused: a node that meant to trust someone would trust no
        one."""
        keys = []
        for path in paths:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise SignatureProblem(f"cannot read the trust file {path}: {e}") from None
            found = 0
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip() and not line.lstrip().startswith("#"):
                    keys.append(parse_public_line(line, f"{path}:{number}"))
                    found += 1
            if not found:
                raise SignatureProblem(f"the trust file {path} holds no key")
        return cls(keys)

    @property
    def ids(self) -> list[str]:
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def check(self, claim: Claim | ReleaseClaim, signature: bytes) -> str:
        """The id of the trusted key that signed ``claim``; :class:`SignatureProblem` saying
        why not otherwise (no signature, a malformed one, or none of the keys signed these
        bytes: another change, another generation, or an untrusted key)."""
        if not signature:
            msg = (
                f"{_change(claim)} needs a signature by a trusted key "
                f"(this node trusts {', '.join(self.ids)}): sign it with `--sign KEYFILE` "
                "(the CLI) or `client.session.sign_with(key)`"
            )
            raise SignatureProblem(msg)
        if len(signature) != SIGNATURE_BYTES:
            msg = f"a signature has {SIGNATURE_BYTES} bytes, this one {len(signature)}"
            raise SignatureProblem(msg)
        ident = self._signer(claim, signature)
        if ident is not None:
            return ident
        earlier = self._replayed(claim, signature)
        if earlier is not None:
            msg = (
                f"the signature does not allow this {_change(claim, detail=True)}: it was made "
                f"for the same change {earlier} generation(s) earlier; a signature allows a "
                "change at one generation only, so that it cannot be replayed (sign it again "
                "for the machine's generation now)"
            )
            raise SignatureProblem(msg)
        msg = (
            f"the signature does not allow this {_change(claim, detail=True)}: it was made for "
            "another change or generation, or by a key this node does not trust"
        )
        raise SignatureProblem(msg)

    def _signer(self, claim: Claim | ReleaseClaim, signature: bytes) -> str | None:
        data = claim_bytes(claim)
        for ident, key in self._keys.items():
            try:
                key.verify(signature, data)
            except InvalidSignature:
                continue
            return ident
        return None

    def _replayed(self, claim: Claim | ReleaseClaim, signature: bytes) -> int | None:
        """How many generations ago ``signature`` allowed this very change (a replay), looking
        back :data:`REPLAY_LOOKBACK` generations at most; None if it never did."""
        for back in range(1, REPLAY_LOOKBACK + 1):
            if isinstance(claim, ReleaseClaim):
                if any(item.generation < back for item in claim.items):
                    return None
                items = tuple(replace(i, generation=i.generation - back) for i in claim.items)
                earlier: Claim | ReleaseClaim = ReleaseClaim(items)
            else:
                if claim.generation < back:
                    return None
                earlier = replace(claim, generation=claim.generation - back)
            if self._signer(earlier, signature) is not None:
                return back
        return None


def _change(claim: Claim | ReleaseClaim, detail: bool = False) -> str:
    """The change a claim describes, for messages."""
    if isinstance(claim, ReleaseClaim):
        if not detail:
            return f"release of {', '.join(i.machine for i in claim.items)}"
        parts = [f"{i.machine} at generation {i.generation}" for i in claim.items]
        return f"release of {', '.join(parts)}"
    if not detail:
        return f"{claim.action} of {claim.machine}"
    if claim.action == "deploy":
        return f"deploy of {claim.machine} on module {claim.code[:12]}"
    return (
        f"upgrade of {claim.machine} from {claim.expected[:12]} at generation "
        f"{claim.generation} to module {claim.code[:12]}"
    )
