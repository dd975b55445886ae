"""Change files: a change written down with ``--out``, signed offline with ``hotswap sign``,
made with ``hotswap apply`` on a node that takes only signed changes (``--trust``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cbor2
import pytest

from hotswap.changes import ChangeProblem, read_change, write_change
from hotswap.client import Client
from hotswap.examples.counter import counter_sm, counter_sm2
from hotswap.node.service import NodeConfig
from hotswap.protocol.events import UpgradeRequest
from hotswap.signing import TrustedKeys, generate_key, public_line, write_private_key
from served import Served, run_cli

V2 = "hotswap.examples.counter:counter_sm2"
MIGRATION = "hotswap.examples.counter:upgrade_state"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path, TrustedKeys]:
    """A trusted key and an untrusted one, as files."""
    ours, theirs = generate_key(), generate_key()
    write_private_key(ours, tmp_path / "ours.key")
    write_private_key(theirs, tmp_path / "theirs.key")
    (tmp_path / "ours.pub").write_text(public_line(ours.public_key()) + "\n", encoding="utf-8")
    trusted = TrustedKeys.from_files([tmp_path / "ours.pub"])
    return tmp_path / "ours.key", tmp_path / "theirs.key", trusted


def test_an_upgrade_is_written_signed_offline_then_applied(
    tmp_path: Path, keys: tuple[Path, Path, TrustedKeys]
) -> None:
    ours, theirs, trusted = keys
    change = tmp_path / "change.hsc"
    config = NodeConfig(trust=trusted)
    with Served(tmp_path / "data", {"counter": counter_sm}, config=config) as node:
        at = ("--node", node.address)
        wrote = run_cli(
            "upgrade", "counter", "--to", V2, "--migration", MIGRATION, "--out", str(change), *at
        )
        assert wrote.returncode == 0, wrote.stderr
        assert "Unsigned" in wrote.stdout and f"from code   {counter_sm.identity}" in wrote.stdout
        with Client(node.address) as c:
            assert c.status("counter").identity == counter_sm.identity  # nothing made yet
        unsigned = run_cli("apply", str(change), *at)
        assert unsigned.returncode != 0 and "needs a signature" in unsigned.stderr
        wrong = run_cli("sign", str(change), "--key", str(theirs), "--out", str(tmp_path / "w"))
        assert wrong.returncode == 0, wrong.stderr
        refused = run_cli("apply", str(tmp_path / "w"), *at)
        assert refused.returncode != 0 and "does not allow this upgrade" in refused.stderr
        signed = run_cli("sign", str(change), "--key", str(ours))  # no node needed: offline
        assert signed.returncode == 0 and "at generation 0" in signed.stdout, signed.stdout
        applied = run_cli("apply", str(change), *at)
        assert applied.returncode == 0, applied.stderr
        assert "Upgrade successful! counter" in applied.stdout
        again = run_cli("apply", str(change), *at)  # replayed: the machine has moved on
        assert again.returncode != 0
        with Client(node.address) as c:
            status = c.status("counter")
            assert (status.identity, status.generation) == (counter_sm2.identity, 1)
        back = tmp_path / "back.hsc"
        down = ("--migration", "hotswap.examples.counter:downgrade_state")
        wrote = run_cli("rollback", "counter", *down, "--out", str(back), "--sign", str(ours), *at)
        assert wrote.returncode == 0 and "Signed." in wrote.stdout, wrote.stderr
        rolled = run_cli("apply", str(back), *at)
        assert rolled.returncode == 0, rolled.stderr
        with Client(node.address) as c:
            assert c.status("counter").identity == counter_sm.identity


def test_releases_and_deploys_go_through_change_files(
    tmp_path: Path, keys: tuple[Path, Path, TrustedKeys]
) -> None:
    ours, _, trusted = keys
    config = NodeConfig(trust=trusted)
    machines = {"a": counter_sm, "b": counter_sm}
    with Served(tmp_path / "data", machines, config=config) as node:
        at = ("--node", node.address)
        release = tmp_path / "release.hsc"
        spec = [
            f"a={V2}",
            f"b={V2}",
            "--migration",
            f"a={MIGRATION}",
            "--migration",
            f"b={MIGRATION}",
        ]
        wrote = run_cli("release", *spec, "--out", str(release), *at)
        assert wrote.returncode == 0 and "release of 2 machines" in wrote.stdout, wrote.stderr
        assert run_cli("sign", str(release), "--key", str(ours)).returncode == 0
        applied = run_cli("apply", str(release), *at)
        assert applied.returncode == 0 and "2 machines swapped" in applied.stdout, applied.stderr
        deploy = tmp_path / "deploy.hsc"
        code = "hotswap.examples.counter:counter_sm"
        assert run_cli("deploy", "c", "--code", code, "--out", str(deploy), *at).returncode == 0
        assert run_cli("sign", str(deploy), "--key", str(ours)).returncode == 0
        made = run_cli("apply", str(deploy), *at)
        assert made.returncode == 0 and "Deployed machine 'c'" in made.stdout, made.stderr
        with Client(node.address) as c:
            assert {c.status(n).identity for n in "ab"} == {counter_sm2.identity}
            assert c.status("c").identity == counter_sm.identity


def test_a_change_file_changed_after_signing_is_refused(
    tmp_path: Path, keys: tuple[Path, Path, TrustedKeys]
) -> None:
    ours, _, trusted = keys
    change = tmp_path / "change.hsc"
    with Served(
        tmp_path / "data", {"counter": counter_sm}, config=NodeConfig(trust=trusted)
    ) as node:
        at = ("--node", node.address)
        args = ("upgrade", "counter", "--to", V2, "--migration", MIGRATION, "--out", str(change))
        assert run_cli(*args, "--sign", str(ours), *at).returncode == 0
        held = read_change(change)
        assert isinstance(held.request, UpgradeRequest)
        # the same signature over the same code, at a later generation, or with a trial
        for tampered in (
            replace(held, generations={"counter": 5}),
            replace(held, request=replace(held.request, trial=3)),
            replace(held, request=replace(held.request, module=counter_sm.module)),
        ):
            write_change(tampered, tmp_path / "t.hsc")
            refused = run_cli("apply", str(tmp_path / "t.hsc"), *at)
            assert refused.returncode != 0, refused.stdout
        with Client(node.address) as c:
            assert c.status("counter").identity == counter_sm.identity


def test_bad_change_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.hsc"
    for content, why in (
        (b"\xff\xfe", "not CBOR"),
        (cbor2.dumps({"format": "other"}), "not a change file of format"),
        (
            cbor2.dumps({"format": "hotswap-change/1", "message": b"x", "generations": {}}),
            "does not decode",
        ),
        (
            cbor2.dumps({"format": "hotswap-change/1", "message": 1, "generations": {}}),
            "a `message`",
        ),
    ):
        bad.write_bytes(content)
        with pytest.raises(ChangeProblem, match=why):
            read_change(bad)
    with pytest.raises(ChangeProblem, match="cannot read"):
        read_change(tmp_path / "missing.hsc")
    shown = run_cli("sign", str(bad), "--key", str(tmp_path / "k"))
    assert shown.returncode != 0 and "a `message`" in shown.stderr


def test_a_change_file_with_keys_of_its_own_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "extra.hsc"
    doc = {"format": "hotswap-change/1", "message": b"", "generations": {}, "note": "hi"}
    bad.write_bytes(cbor2.dumps(doc))
    with pytest.raises(ChangeProblem, match="has no key note"):
        read_change(bad)
