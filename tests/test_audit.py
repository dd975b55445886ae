"""The audit trail: every change of code records who made it (the authenticated principal) and
the key that signed it, durably (store schema 4), across a restart, in `hotswap history` and
in version 4 of the protocol; refused changes are noted in the trace with who tried, and leave
the store as it was."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import cbor2
import pytest

from hotswap.auth import Credentials
from hotswap.client import Client, Upgrade
from hotswap.errors import NodeError, RemoteProtocolError
from hotswap.examples.counter import Incr, counter_sm, counter_sm2, downgrade_state, upgrade_state
from hotswap.node.memory import MemoryNode
from hotswap.node.service import NodeConfig
from hotswap.node.trace import Trace
from hotswap.protocol.codec import decode_schema, encode_message
from hotswap.protocol.events import HistoryEntry, HistoryKind, StatusReply
from hotswap.signing import TrustedKeys, generate_key, key_id
from served import Served, run_cli

FIXTURES = Path(__file__).parent / "fixtures"


def _who(c: Client, machine: str = "counter") -> list[tuple[str, str | None, str | None]]:
    return [(e.kind, e.by, e.signer) for e in c.status_raw(machine).history]


def _log(node: MemoryNode) -> list[tuple[str, str | None, str | None]]:
    rows = node.service.store.db.execute(
        "SELECT kind, principal, signer FROM log WHERE kind != 'input' ORDER BY seq"
    )
    return [(kind, by, signer) for kind, by, signer in rows]


def test_every_change_of_code_records_who_made_it_and_keeps_it_across_a_restart() -> None:
    credentials = Credentials()
    ci = credentials.add("ci", ["upgrade"])
    ops = credentials.add("ops", ["admin"])
    config = NodeConfig(credentials=credentials)
    with MemoryNode({"counter": counter_sm}, config=config) as node:
        with Client(transport=node.connection(), token=ci) as c:
            c.send("counter", Incr())
            c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            c.deploy("other", counter_sm)
            c.upgrade("counter", Upgrade(counter_sm2, counter_sm, downgrade_state), trial=5)
        with Client(transport=node.connection(), token=ops) as c:
            c.revert("counter")  # the trial taken back: a change of code, by ops
            c.upgrade("counter", Upgrade(counter_sm2, counter_sm, downgrade_state), trial=5)
            c.confirm("counter")  # no change of code: in the log, not in the history
            c.release({"other": Upgrade(counter_sm, counter_sm2, upgrade_state)})
            expected = [
                ("start", None, None),  # --machine: the node's own command line
                ("upgrade", "ci", None),
                ("upgrade", "ci", None),  # the trial
                ("upgrade", "ops", None),  # its revert
                ("upgrade", "ops", None),  # the second trial, confirmed
            ]
            assert _who(c) == expected
            assert _who(c, "other") == [("start", "ci", None), ("upgrade", "ops", None)]
        assert _log(node) == [
            ("start", None, None),
            ("upgrade", "ci", None),
            ("start", "ci", None),
            ("trial", "ci", None),
            ("revert", "ops", None),
            ("trial", "ops", None),
            ("confirm", "ops", None),
            ("upgrade", "ops", None),
        ]
        node.reopen()  # as after a crash: the history comes from the log
        with Client(transport=node.connection(), token=ops) as c:
            assert _who(c) == expected
            assert _who(c, "other") == [("start", "ci", None), ("upgrade", "ops", None)]


def test_a_signed_change_records_the_key_that_signed_it() -> None:
    key, other = generate_key(), generate_key()
    credentials = Credentials()
    ci = credentials.add("ci", ["upgrade"])
    trusted = TrustedKeys([key.public_key(), other.public_key()])
    config = NodeConfig(credentials=credentials, trust=trusted)
    with MemoryNode({"counter": counter_sm}, config=config) as node:
        with Client(transport=node.connection(), token=ci) as c:
            c.session.sign_with(key)
            c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            c.session.sign_with(other)
            c.rollback("counter", downgrade_state)
            c.deploy("more", counter_sm)
            ids = key_id(key.public_key()), key_id(other.public_key())
            assert _who(c) == [
                ("start", None, None),
                ("upgrade", "ci", ids[0]),
                ("upgrade", "ci", ids[1]),
            ]
            assert _who(c, "more") == [("start", "ci", ids[1])]
        node.reopen()
        with Client(transport=node.connection(), token=ci) as c:
            assert _who(c)[1:] == [("upgrade", "ci", ids[0]), ("upgrade", "ci", ids[1])]


def test_without_auth_nobody_is_recorded_and_the_trace_is_the_seeds() -> None:
    """A node without --auth knows nobody: ``by`` is None (history shows ``-``), and a refused
    upgrade prints the seed's line alone."""
    out = io.StringIO()
    with (
        MemoryNode({"counter": counter_sm}, trace=Trace("seed", out)) as node,
        Client(transport=node.connection()) as c,
    ):
        c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        with pytest.raises(NodeError):
            c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
        assert _who(c) == [("start", None, None), ("upgrade", None, None)]
    assert "Refused" not in out.getvalue()
    assert "The version running isn't the one the upgrade expects." in out.getvalue()


def test_refused_changes_are_traced_with_who_tried_and_leave_the_store_as_it_was() -> None:
    """Forbidden by role, unsigned, signed by an unknown key, for the wrong version, on an
    unknown machine: each is a trace line naming who tried, and none writes to the store."""
    key, stranger = generate_key(), generate_key()
    credentials = Credentials()
    ci = credentials.add("ci", ["upgrade"])
    app = credentials.add("app", ["send"])
    trusted = TrustedKeys([key.public_key()])
    out = io.StringIO()
    config = NodeConfig(credentials=credentials, trust=trusted)
    with MemoryNode({"counter": counter_sm}, config=config, trace=Trace("seed", out)) as node:
        store = node.service.store
        with Client(transport=node.connection(), token=ci) as c:
            c.session.sign_with(key)
            c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            c.send("counter", Incr())
        counts = store.db.execute(
            "SELECT (SELECT COUNT(*) FROM log), (SELECT COUNT(*) FROM modules)"
        ).fetchone()
        last, changes = store.last_seq, store.db.total_changes
        with Client(transport=node.connection(), token=app) as c, pytest.raises(NodeError):
            c.rollback("counter", downgrade_state)
        with Client(transport=node.connection(), token=ci) as c:
            for signer in (None, stranger, key):  # unsigned, untrusted, the wrong version
                c.session.sign_with(signer)
                with pytest.raises(NodeError):
                    c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
            with pytest.raises(NodeError):
                c.confirm("counter")
            assert c.status("counter").inputs == 1
        assert store.last_seq == last and store.db.total_changes == changes
        assert (
            store.db.execute(
                "SELECT (SELECT COUNT(*) FROM log), (SELECT COUNT(*) FROM modules)"
            ).fetchone()
            == counts
        )
    refused = [line for line in out.getvalue().splitlines() if "refused" in line.lower()]
    notes = [line for line in refused if line.startswith(("Refused ", "Request refused"))]
    assert notes[0].startswith("Request refused (forbidden): app (roles: send)")
    assert notes[1].startswith("Refused upgrade of 'counter' by ci: forbidden: upgrade of ")
    assert "needs a signature by a trusted key" in notes[1]
    assert notes[2].startswith("Refused upgrade of 'counter' by ci: forbidden: ")
    assert notes[3].startswith("Refused upgrade of 'counter' by ci: wrong_version: ")
    assert notes[4].startswith("Refused confirm of 'counter' by ci: bad_request: ")
    assert len(notes) == 5


def _reply(history: tuple[HistoryEntry, ...]) -> StatusReply:
    return StatusReply(1, "m", "a" * 64, b"", b"", b"", b"", 0, history, 1)


def test_who_travels_in_version_4_only() -> None:
    """A version 3 (or 2, or 1) connection gets the history entries without ``by`` and
    ``signer``, as its decoder expects them; a version 4 one gets them, and refuses them from
    a peer of an earlier version."""
    entries = (
        HistoryEntry("a" * 64, HistoryKind.START, 0, 1.5),
        HistoryEntry("b" * 64, HistoryKind.UPGRADE, 3, 2.5, "ci", "0123456789abcdef"),
        HistoryEntry("c" * 64, HistoryKind.UPGRADE, 4, 3.5, "ops"),
    )
    reply = _reply(entries)
    plain = _reply(tuple(HistoryEntry(e.identity, e.kind, e.seq, e.time) for e in entries))
    for version in (1, 2, 3):
        assert encode_message(reply, version) == encode_message(plain, version)
        assert decode_schema(encode_message(reply, version), from_client=False, version=version)
    got = decode_schema(encode_message(reply, 4), from_client=False, version=4)
    assert isinstance(got, StatusReply) and got.history == entries
    with pytest.raises(RemoteProtocolError, match="unknown field"):
        decode_schema(encode_message(reply, 4), from_client=False, version=3)
    with pytest.raises(RemoteProtocolError, match=r"field 'by': expected a text string"):
        decode_schema(_entry_with(by=7), from_client=False, version=4)
    with pytest.raises(RemoteProtocolError, match=r"field 'signer': expected a key id"):
        decode_schema(_entry_with(signer="not hex"), from_client=False, version=4)


def _entry_with(**extra: object) -> bytes:
    """A version 4 status reply whose one history entry has ``extra`` fields."""
    entry = {"seq": 0, "kind": "start", "time": 1.5, "identity": "a" * 64, **extra}
    item = {
        "id": 1,
        "type": "status_reply",
        "state": b"",
        "inputs": 0,
        "history": [entry],
        "machine": "m",
        "identity": "a" * 64,
        "input_type": b"",
        "state_type": b"",
        "output_type": b"",
    }
    return bytes(cbor2.dumps(item, canonical=True))


def test_a_version_3_client_gets_the_replies_it_got_before() -> None:
    """tests/fixtures/frames_v3.json: every chunk the version 3 client wrote (hello, sends, a
    keyed send, statuses, an upgrade) gets, from this node, the replies it got then."""
    from test_instances_compat import _payloads  # noqa: PLC0415

    chunks = json.loads((FIXTURES / "frames_v3.json").read_text())
    with MemoryNode({"counter": counter_sm}) as node:
        conn = node.connection()
        for chunk in chunks:
            conn.send(bytes.fromhex(chunk["sent"]))
            got = conn.recv()
            assert _payloads(got) == _payloads(bytes.fromhex(chunk["received"]))


def test_the_cli_history_shows_who(tmp_path: Path) -> None:
    with Served(tmp_path, {"counter": counter_sm}, auth=True) as node:
        token = (tmp_path / "client.token").read_text().strip()
        at = ("--node", node.address, "--token", token)
        assert run_cli("send", *at, "counter", "Count()").returncode == 0
        up = ("upgrade", *at, "counter", "--to", "hotswap.examples.counter:counter_sm2")
        assert run_cli(*up).returncode == 0
        history = run_cli("history", *at, "counter")
        assert history.returncode == 0, history.stderr
        lines = history.stdout.splitlines()
        assert [line.split()[2] for line in lines] == ["start", "upgrade"]
        assert "  by -  (generation 0)" in lines[0]
        assert "  by local  (generation 1)" in lines[1]


def test_a_flood_of_refusals_does_not_flood_the_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node with --trust and no --auth refuses anyone's unsigned upgrades: at most
    REFUSALS_TRACED of them a second are traced, the rest counted in one line."""
    from hotswap.node import service  # noqa: PLC0415

    now = [1000.0]
    monkeypatch.setattr(service, "REFUSALS_TRACED", 3)
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the service's clock
    out = io.StringIO()
    config = NodeConfig(trust=TrustedKeys([generate_key().public_key()]))
    with (
        MemoryNode({"counter": counter_sm}, config=config, trace=Trace("off", out)) as node,
        Client(transport=node.connection()) as c,
    ):
        for second in range(2):
            now[0] += second
            for _ in range(10):
                with pytest.raises(NodeError):
                    c.upgrade("counter", Upgrade(counter_sm, counter_sm2, upgrade_state))
    lines = [line for line in out.getvalue().splitlines() if "efus" in line]
    assert lines == [
        *["Refused upgrade of 'counter' by -: forbidden: " + lines[0].split(": ", 2)[2]] * 3,
        "(7 more refusals of principals not traced)",
        *["Refused upgrade of 'counter' by -: forbidden: " + lines[0].split(": ", 2)[2]] * 3,
    ]


def test_role_refusals_and_strangers_have_budgets_of_their_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Requests beyond a token's roles, and connections without a known token, are traced
    within budgets of their own: a stranger with no token cannot flood the trace, nor hide
    a principal's refusals in it; the count of the untraced is said at the next tick even if
    no refusal follows."""
    from hotswap.node import service  # noqa: PLC0415

    now = [1000.0]
    monkeypatch.setattr(service, "REFUSALS_TRACED", 3)
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    credentials = Credentials()
    reader = credentials.add("reader", ["read"])
    out = io.StringIO()
    config = NodeConfig(credentials=credentials)
    with MemoryNode({"counter": counter_sm}, config=config, trace=Trace("off", out)) as node:
        with Client(transport=node.connection(), token=reader) as c:
            for _ in range(5):
                with pytest.raises(NodeError):
                    c.send("counter", Incr())
        for _ in range(5):
            with pytest.raises(NodeError):
                Client(transport=node.connection(), token="hst_nobody")
        now[0] += 1
        node.service.tick(time.time())
    lines = [line for line in out.getvalue().splitlines() if "efus" in line]
    assert len(lines) == 8, lines
    assert all("(machine 'counter')" in line for line in lines[:3])
    assert all("refused (unauthorized)" in line for line in lines[3:6])
    assert sorted(lines[6:]) == [
        "(2 more refusals before a hello not traced)",
        "(2 more refusals of principals not traced)",
    ]
