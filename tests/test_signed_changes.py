"""A node started with ``--trust`` changes code only with a valid signature by a trusted key:
unsigned, wrongly signed and replayed changes are refused with ``forbidden`` and change
nothing, and nothing of them is decoded first."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hotswap.cam.module import decode_module, encode_module, module_identity
from hotswap.client import Client, Upgrade
from hotswap.errors import NodeError
from hotswap.examples.counter import Incr, counter_sm, counter_sm2, downgrade_state, upgrade_state
from hotswap.node.memory import MemoryNode
from hotswap.node.service import NodeConfig
from hotswap.protocol.events import Error, Release, Released, ReleaseItem, UpgradeRequest
from hotswap.signing import (
    Claim,
    ReleaseClaim,
    TrustedKeys,
    digest,
    generate_key,
    public_line,
    sign,
    write_private_key,
)
from served import Served, run_cli


def _node(trusted: TrustedKeys) -> MemoryNode:
    return MemoryNode({"counter": counter_sm}, config=NodeConfig(trust=trusted))


def test_only_changes_signed_by_a_trusted_key_are_made() -> None:
    ours, theirs = generate_key(), generate_key()
    with _node(TrustedKeys([ours.public_key()])) as node, Client(transport=node.connection()) as c:
        c.send("counter", Incr())
        for signer in (None, theirs):
            c.session.sign_with(signer)
            with pytest.raises(NodeError) as refused:
                c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            assert refused.value.code == "forbidden"
            assert c.status("counter").identity == counter_sm.identity
        assert "needs a signature by a trusted key" in str(_refusal(c, None))
        c.session.sign_with(ours)
        done = c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        assert done.new == counter_sm2.identity
        back = c.rollback("counter", downgrade_state)  # a rollback is an upgrade: signed too
        assert back.new == counter_sm.identity
        assert c.send("counter", Incr()) is None and c.status("counter").inputs == 2
        c.session.sign_with(None)
        with pytest.raises(NodeError, match="deploy of more needs a signature"):
            c.deploy("more", counter_sm)
        c.session.sign_with(ours)
        assert c.deploy("more", counter_sm).started


def _refusal(c: Client, signer: object) -> str:
    c.session.sign_with(None)
    try:
        c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
    except NodeError as e:
        return str(e)
    raise AssertionError("the unsigned upgrade was accepted")


def test_a_signed_upgrade_cannot_be_replayed_once_the_machine_moved_on() -> None:
    """The same signed request, sent again after the code went and came back (the same
    identity is expected again), names a generation the machine has left."""
    key = generate_key()
    module, migration = counter_sm2.module, upgrade_state.module
    claim = Claim(
        "upgrade",
        "counter",
        counter_sm.identity,
        0,
        digest(module),
        digest(migration),
    )
    request = UpgradeRequest(
        1,
        "counter",
        counter_sm.identity,
        module,
        migration,
        generation=0,
        signature=sign(key, claim),
    )
    with _node(TrustedKeys([key.public_key()])) as node, Client(transport=node.connection()) as c:
        c.session.sign_with(key)
        first = c.request(request)
        assert not isinstance(first, Error), first
        c.rollback("counter", downgrade_state)
        assert c.status("counter").identity == counter_sm.identity
        again = c.request(request)
        # the signature holds for generation 0, which the machine has left
        assert isinstance(again, Error) and again.code == "wrong_version", again
        tampered = UpgradeRequest(
            2,
            "counter",
            counter_sm.identity,
            module,
            migration,
            generation=2,
            signature=sign(key, claim),
        )
        refused = c.request(tampered)
        assert isinstance(refused, Error) and refused.code == "forbidden"
        assert "same change 2 generation(s) earlier" in refused.message, refused.message
        assert c.status("counter").identity == counter_sm.identity


def test_the_cli_makes_keys_and_signs_with_them(tmp_path: Path) -> None:
    made = run_cli("keygen", "--out", str(tmp_path / "release.key"))
    assert made.returncode == 0, made.stderr
    public = (tmp_path / "release.key.pub").read_text(encoding="utf-8")
    assert public.startswith("hotswap-ed25519 ")
    again = run_cli("keygen", "--out", str(tmp_path / "release.key"))
    assert again.returncode == 1 and "exists" in again.stderr
    trusted = TrustedKeys.from_files([tmp_path / "release.key.pub"])
    assert len(trusted) == 1 and trusted.ids[0] in made.stdout
    other = generate_key()
    write_private_key(other, tmp_path / "other.key")
    assert public_line(other.public_key()) not in public
    served = Served(tmp_path / "node", {"counter": counter_sm}, config=NodeConfig(trust=trusted))
    try:
        node = ("--node", served.address)
        upgrade = ("upgrade", "counter", "--to", "hotswap.examples.counter:counter_sm2", *node)
        unsigned = run_cli(*upgrade)
        assert unsigned.returncode == 1 and "needs a signature by a trusted key" in unsigned.stderr
        wrong = run_cli(*upgrade, "--sign", str(tmp_path / "other.key"))
        assert wrong.returncode == 1 and "does not trust" in wrong.stderr
        signed = run_cli(*upgrade, "--sign", str(tmp_path / "release.key"))
        assert signed.returncode == 0, signed.stderr
        with Client(served.address) as c:
            assert c.status("counter").identity == counter_sm2.identity
    finally:
        served.stop()


def test_a_signature_covers_the_names_too() -> None:
    """A module's identity leaves out its custom sections, names included; a signature covers
    all its bytes, so names changed under a signed module (``Incr`` shown as ``Count``) fail."""
    key = generate_key()
    module = decode_module(counter_sm2.module)
    renamed = encode_module(replace(module, custom=(*module.custom, ("zz-extra", b"x"))))
    assert module_identity(renamed) == counter_sm2.identity and renamed != counter_sm2.module
    with _node(TrustedKeys([key.public_key()])) as node, Client(transport=node.connection()) as c:
        migration = upgrade_state.module
        claim = Claim(
            "upgrade",
            "counter",
            counter_sm.identity,
            0,
            digest(counter_sm2.module),
            digest(migration),
        )
        request = UpgradeRequest(
            1,
            "counter",
            counter_sm.identity,
            renamed,
            migration,
            generation=0,
            signature=sign(key, claim),
        )
        refused = c.request(request)
        assert isinstance(refused, Error) and refused.code == "forbidden"
        options = UpgradeRequest(
            2,
            "counter",
            counter_sm.identity,
            counter_sm2.module,
            migration,
            generation=0,
            check_all=True,
            signature=sign(key, claim),
        )
        refused = c.request(options)  # the signer did not ask for --check-all: not this one
        assert isinstance(refused, Error) and refused.code == "forbidden"
        assert c.status("counter").identity == counter_sm.identity


def test_a_release_is_signed_as_a_whole() -> None:
    """One signature covers every machine of a release at its generation: unsigned, signed by
    another key, a part of a signed release, or the same release again are all refused."""
    ours, theirs = generate_key(), generate_key()
    config = NodeConfig(trust=TrustedKeys([ours.public_key()]))
    machines = {"a": counter_sm, "b": counter_sm}
    both = {name: Upgrade(counter_sm, counter_sm2, upgrade_state) for name in machines}
    with MemoryNode(machines, config=config) as node, Client(transport=node.connection()) as c:
        for signer, why in ((None, "release of a, b needs a signature"), (theirs, "another")):
            c.session.sign_with(signer)
            with pytest.raises(NodeError, match=why) as refused:
                c.release(both)
            assert refused.value.code == "forbidden"
        module, migration = counter_sm2.module, upgrade_state.module
        items = tuple(ReleaseItem(n, counter_sm.identity, module, migration) for n in machines)
        claims = tuple(
            Claim("release", n, counter_sm.identity, 0, digest(module), digest(migration))
            for n in machines
        )
        signature = sign(ours, ReleaseClaim(claims))
        part = c.request(Release(1, items[:1], signature))  # a itself, under the pair's signature
        assert isinstance(part, Error) and part.code == "forbidden", part
        as_upgrade = c.request(
            UpgradeRequest(2, "a", counter_sm.identity, module, migration, 0, signature=signature)
        )
        assert isinstance(as_upgrade, Error) and as_upgrade.code == "forbidden", as_upgrade
        assert {c.status(n).identity for n in machines} == {counter_sm.identity}
        done = c.request(Release(3, items, signature))
        assert isinstance(done, Released), done
        assert {c.status(n).identity for n in machines} == {counter_sm2.identity}
        c.session.sign_with(ours)
        c.release({n: Upgrade(counter_sm2, counter_sm, downgrade_state) for n in machines})
        again = c.request(Release(4, items, signature))  # generations have moved on: refused
        assert isinstance(again, Error) and again.code == "forbidden", again
        assert "same change 2 generation(s) earlier" in again.message, again.message
        assert {c.status(n).identity for n in machines} == {counter_sm.identity}
