"""Principals and tokens: a token proves exactly one principal, roles include the ones below,
and a credentials file is private, versioned and checked entry by entry."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hotswap.auth import ROLES, CredentialProblem, Credentials, allows, new_token


def test_roles_include_the_ones_before_them() -> None:
    assert allows(frozenset({"admin"}), "read") and allows(frozenset({"upgrade"}), "send")
    assert not allows(frozenset({"read"}), "send") and not allows(frozenset({"send"}), "upgrade")
    assert [allows(frozenset({"send"}), r) for r in ROLES] == [True, True, False, False]
    with pytest.raises(CredentialProblem, match="unknown role 'root'"):
        allows(frozenset({"read"}), "root")


def test_a_token_authenticates_its_principal_and_nothing_else(tmp_path: Path) -> None:
    creds = Credentials()
    ci = creds.add("ci", ["send"])
    ops = creds.add("ops", ["upgrade"])
    assert ci.startswith("hst_") and len(ci) < 128 and ci != new_token("ci")
    principal = creds.authenticate(ci)
    assert principal is not None and principal.name == "ci" and principal.may("send")
    assert not principal.may("upgrade")
    assert creds.authenticate(ops) is not None
    for wrong in (ci[:-1], ci + "x", "", None, 42, "x" * 10_000):
        assert creds.authenticate(wrong) is None
    path = tmp_path / "credentials.json"
    creds.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ci not in path.read_text(encoding="utf-8")  # only hashes are stored
    again = Credentials.load(path)
    assert [p.name for p in again.principals] == ["ci", "ops"]
    assert again.authenticate(ci) == principal
    assert again.revoke("ci") == 1 and again.authenticate(ci) is None


def test_a_missing_file_means_no_principals(tmp_path: Path) -> None:
    assert len(Credentials.load(tmp_path / "none.json")) == 0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("not json", "is not JSON"),
        (json.dumps({"version": 2, "principals": []}), "version 1"),
        (json.dumps({"version": 1, "principals": {}}), "must be a list"),
        (json.dumps({"version": 1, "principals": [1]}), r"principals\[0\] must be an object"),
        (
            json.dumps({"version": 1, "principals": [{"name": "a", "roles": ["god"]}]}),
            "unknown role 'god' for a",
        ),
        (
            json.dumps({"version": 1, "principals": [{"name": "a", "roles": []}]}),
            "needs at least one role",
        ),
        (
            json.dumps({"version": 1, "principals": [{"name": "", "roles": ["read"]}]}),
            "1 to 64 printable characters",
        ),
        (
            json.dumps(
                {"version": 1, "principals": [{"name": "a", "roles": ["read"], "sha256": "x"}]}
            ),
            "64 hex digits",
        ),
    ],
)
def test_bad_credentials_files_say_what_is_wrong(tmp_path: Path, doc: str, message: str) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(doc, encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(CredentialProblem, match=message):
        Credentials.load(path)


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    Credentials().save(path)
    path.chmod(0o644)
    with pytest.raises(CredentialProblem, match="chmod 600"):
        Credentials.load(path)
