"""Signed changes: what a signature allows, and nothing else.

A signature is over one claim (action, machine, expected code and generation, new code,
migration): changing any part of it, replaying it at the next generation, or signing with a key
the node does not trust is refused with a message that says which and what to do.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Any

import cbor2
import pytest

from hotswap.signing import (
    DOMAIN,
    Claim,
    SignatureProblem,
    TrustedKeys,
    claim_bytes,
    generate_key,
    key_id,
    public_line,
    read_private_key,
    sign,
    write_private_key,
)

CLAIM = Claim("upgrade", "counter", "a" * 64, 3, "b" * 64, "c" * 64)


def test_a_signature_allows_exactly_its_claim() -> None:
    key = generate_key()
    trusted = TrustedKeys([key.public_key()])
    signature = sign(key, CLAIM)
    assert trusted.check(CLAIM, signature) == key_id(key.public_key())
    changes: dict[str, Any] = {
        "action": "deploy",
        "machine": "counter2",
        "expected": "d" * 64,
        "generation": 4,  # the same change replayed once the machine moved on
        "code": "e" * 64,
        "migration": "",
        "rename": True,
        "trial": 5,
        "trial_seconds": 60,
        "check_all": True,  # a signed check cannot be dropped
    }
    for field, value in changes.items():
        other = dataclasses.replace(CLAIM, **{field: value})
        why = "1 generation.s. earlier" if field == "generation" else "another change or gener"
        with pytest.raises(SignatureProblem, match=why):
            trusted.check(other, signature)
    with pytest.raises(SignatureProblem, match="another change or generation"):  # not earlier
        trusted.check(dataclasses.replace(CLAIM, generation=2), signature)


def test_untrusted_missing_and_malformed_signatures_are_refused() -> None:
    mine, theirs = generate_key(), generate_key()
    trusted = TrustedKeys([mine.public_key()])
    with pytest.raises(SignatureProblem, match="or by a key this node does not trust"):
        trusted.check(CLAIM, sign(theirs, CLAIM))
    with pytest.raises(SignatureProblem, match="needs a signature by a trusted key"):
        trusted.check(CLAIM, b"")
    with pytest.raises(SignatureProblem, match="a signature has 64 bytes, this one 3"):
        trusted.check(CLAIM, b"abc")
    flipped = bytearray(sign(mine, CLAIM))
    flipped[10] ^= 1
    with pytest.raises(SignatureProblem):
        trusted.check(CLAIM, bytes(flipped))


def test_the_signed_bytes_are_a_canonical_cbor_array() -> None:
    """What another implementation signs: the domain first, then the claim's fields in order."""
    data = claim_bytes(CLAIM)
    assert cbor2.loads(data) == [
        DOMAIN,
        "upgrade",
        "counter",
        "a" * 64,
        3,
        "b" * 64,
        "c" * 64,
        False,
        0,
        0,
        False,
    ]
    assert data[0] == 0x8B  # an array of 11, definite length
    assert claim_bytes(Claim("deploy", "m", "", 0, "f" * 64)).startswith(
        b"\x8b\x77" + DOMAIN.encode()
    )


def test_claims_refuse_unknown_actions_and_bad_generations() -> None:
    with pytest.raises(SignatureProblem, match="unknown action 'install'"):
        Claim("install", "m", "", 0, "")
    with pytest.raises(SignatureProblem, match="generation -1 is out of range"):
        Claim("upgrade", "m", "", -1, "")


def test_key_files_round_trip_and_private_keys_are_private(tmp_path: Path) -> None:
    key = generate_key()
    private = tmp_path / "release.key"
    write_private_key(key, private)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    with pytest.raises(SignatureProblem, match="exists: choose another file"):
        write_private_key(generate_key(), private)
    again = read_private_key(private)
    assert key_id(again.public_key()) == key_id(key.public_key())
    trust = tmp_path / "trusted.pub"
    trust.write_text(
        "# release keys\n\n" + public_line(key.public_key(), "release\nbot") + "\n",
        encoding="utf-8",
    )
    assert "\n" not in public_line(key.public_key(), "release\nbot")
    trusted = TrustedKeys.from_files([trust])
    assert trusted.ids == [key_id(key.public_key())]
    assert trusted.check(CLAIM, sign(again, CLAIM)) == trusted.ids[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no key"),
        ("# nothing\n", "holds no key"),
        ("ssh-ed25519 AAAA\n", "expected `hotswap-ed25519 <base64 key> \\[comment\\]`"),
        ("hotswap-ed25519 !!!\n", "not valid base64"),
        ("hotswap-ed25519 AAAA\n", "has 32 bytes, this one 3"),
    ],
)
def test_bad_trust_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    trust = tmp_path / "trusted.pub"
    trust.write_text(text, encoding="utf-8")
    with pytest.raises(SignatureProblem, match=message):
        TrustedKeys.from_files([trust])


def test_bad_private_key_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(SignatureProblem, match="cannot read the private key"):
        read_private_key(tmp_path / "missing.key")
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key")
    with pytest.raises(SignatureProblem, match="not an unencrypted PEM private key"):
        read_private_key(junk)
