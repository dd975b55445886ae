"""Keyed instances on an in-memory node: made by their first input, upgraded lazily, trapped,
swept, cached, deleted, listed, deployed, and recovered after a kill (``MemoryNode.reopen``)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hotswap.client import AsyncClient, Client, Upgrade
from hotswap.errors import HotswapError, NodeError, UpgradeRejected
from hotswap.examples.counter import Count, Incr, counter_sm, counter_sm2
from hotswap.node.instances import chain_start
from hotswap.node.memory import MemoryNode
from hotswap.node.registry import Change, Registry
from hotswap.node.service import NodeConfig, Service
from hotswap.node.store import Store
from hotswap.protocol.events import Error, HistoryKind, Send
from instance_machines import (
    Add,
    Get,
    Tally,
    Tally3,
    back_to_v1,
    tally_v1,
    tally_v2,
    tally_v3,
    v1_to_v2,
    v1_to_v2_safe,
    v2_to_v3,
)

MACHINES = (tally_v1, tally_v2, tally_v3)


@pytest.fixture
def node() -> Iterator[MemoryNode]:
    with MemoryNode({"tally": tally_v1}) as n:
        yield n


def client(node: MemoryNode) -> Client:
    return Client(transport=node.connection(), machines=MACHINES)


def test_instances_are_made_by_their_first_input_and_kept_apart(node: MemoryNode) -> None:
    """Each key has its own state from init; the default instance is untouched by them."""
    c = client(node)
    assert c.send("tally", Add(5), key="a") == 5
    assert c.send("tally", Add(2), key="a") == 7
    assert c.send("tally", Add(1), key="b") == 1
    assert c.send("tally", Get()) == 0  # the default instance
    a = c.status("tally", key="a")
    assert (a.key, a.state, a.inputs, a.identity) == ("a", 7, 2, tally_v1.identity)
    whole = c.status("tally")
    assert (whole.key, whole.inputs, whole.instances) == (None, 1, 2)
    assert [(x.identity, x.instances) for x in whole.codes] == [(tally_v1.identity, 2)]
    node.reopen()
    c = client(node)
    assert c.status("tally", key="a").state == 7
    assert c.status("tally").instances == 2


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "not empty"),
        ("x" * 257, "at most 256 bytes"),
        ("é" * 129, "this one is 258"),
        ("a\0b", "NUL"),
        ("\udcff", "valid UTF-8"),
        (b"k", "a string"),
    ],
)
def test_bad_keys_are_refused_with_a_reason(node: MemoryNode, key: object, why: str) -> None:
    """Empty, too long, NUL, not UTF-8, not a string: refused before anything is sent."""
    c = client(node)
    with pytest.raises(HotswapError, match=why):
        c.send("tally", Add(1), key=key)  # type: ignore[arg-type]
    assert c.status("tally").instances == 0
    assert c.send("tally", Add(1), key="é" * 128) == 1  # 256 bytes: the longest key


def test_the_node_refuses_bad_keys_it_is_sent(node: MemoryNode) -> None:
    """The node checks keys too: a raw request with an empty key is a protocol error."""
    c = client(node)
    with pytest.raises(HotswapError, match="not empty"):
        c.wire.conn.send(Send(1, "tally", b"", True, ""))
    reply = node.service.handle(Send(9, "tally", b"\x00", True, ""))
    assert isinstance(reply, Error) and reply.code == "bad_request"
    assert "not empty" in reply.message


def test_unknown_instances_are_named(node: MemoryNode) -> None:
    """A status or delete of a key that has no instance says so."""
    c = client(node)
    with pytest.raises(NodeError, match="tally has no instance 'nobody'") as e:
        c.status("tally", key="nobody")
    assert e.value.code == "unknown_instance"
    with pytest.raises(NodeError, match="no instance 'nobody' to delete"):
        c.delete("tally", "nobody")
    with pytest.raises(NodeError, match="no machine 'other'"):
        c.send("other", Add(1), key="a")


def test_an_upgrade_migrates_each_instance_when_next_touched(node: MemoryNode) -> None:
    """After v1 -> v2 -> v3, an instance migrates on its next input through every migration
    since the code it last ran, and equals a fresh run of its inputs; untouched instances stay
    on their code, counted per identity, across a restart."""
    c = client(node)
    rng = random.Random(9)
    log: dict[str, list[tuple[int, int]]] = {}
    keys = [f"k{i:03}" for i in range(60)]
    for gen, upgrade in enumerate([None, Upgrade(tally_v1, tally_v2, v1_to_v2_safe), None]):
        if upgrade is not None:
            c.upgrade("tally", upgrade)
        if gen == 2:
            c.upgrade("tally", Upgrade(tally_v2, tally_v3, v2_to_v3))
        for key in rng.sample(keys, 20):
            n = rng.randrange(1, 5)
            c.send("tally", Add(n), key=key)
            log.setdefault(key, []).append((gen, n))
    node.reopen()
    c = client(node)
    status = c.status("tally")
    assert status.instances == len(log)
    assert sum(x.instances for x in status.codes) == len(log)
    for key, inputs in log.items():
        want = _replay(inputs)
        got = c.status("tally", key=key)
        assert got.state == want, key
        assert got.identity == tally_v3.identity
    assert [(x.identity, x.instances) for x in c.status("tally").codes] == [
        (tally_v3.identity, len(log))
    ]


def _replay(inputs: list[tuple[int, int]]) -> object:
    """A fresh run of one key's inputs (generation, n): v1, the safe migration, v2, v3."""
    machines: list[Any] = [tally_v1, tally_v2, tally_v3]
    migrations: list[Any] = [v1_to_v2_safe, v2_to_v3]
    generation = inputs[0][0]
    state = _init(generation)
    for gen, n in inputs:
        while generation < gen:
            state = migrations[generation](state)
            generation += 1
        state, _ = machines[gen](Add(n), state)
    while generation < 2:  # the status read migrates it to the running code
        state = migrations[generation](state)
        generation += 1
    return state


def _init(generation: int) -> object:
    return [0, Tally(0, 0), Tally3(0, 0, 3)][generation]


def test_a_migration_that_traps_leaves_exactly_those_instances_on_the_old_code(
    node: MemoryNode,
) -> None:
    """Keys whose total is 13 trap in v1 -> v2: their inputs get migration_trap naming them,
    they keep their code and state, status lists them; a rollback resolves them."""
    c = client(node)
    for key, n in [("ok1", 5), ("bad1", 13), ("ok2", 20), ("bad2", 13)]:
        c.send("tally", Add(n), key=key)
    c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2))
    assert c.send("tally", Add(1), key="ok1") == 1006
    with pytest.raises(UpgradeRejected, match=r"tally\['bad1'\].*trapped") as e:
        c.send("tally", Add(1), key="bad1")
    assert e.value.code == "migration_trap"
    bad = c.status("tally", key="bad1")
    assert (bad.identity, bad.state, bad.inputs) == (tally_v1.identity, 13, 1)
    assert [t.key for t in bad.trapped] == ["bad1"]
    assert node.sweep(100) == 3  # bad1 (known), ok2 and bad2: the sweeper finds the other
    status = c.status("tally")
    assert [t.key for t in status.trapped] == ["bad1", "bad2"]
    assert status.sweep is not None and status.sweep.trapped == 2
    assert status.sweep.remaining == 2 and status.sweep.migrated == 1
    node.reopen()  # nothing of the traps was made durable: the same after a restart
    c = client(node)
    assert c.status("tally", key="bad2").state == 13
    # --check-all follows the path each instance will take: the trapped ones need no
    # migration to go back to their own code, so the rollback that resolves them passes it
    c.rollback("tally", back_to_v1, check_all=True)
    assert c.send("tally", Add(1), key="bad1") == 14
    assert c.send("tally", Add(1), key="ok1") == 7
    assert c.status("tally").trapped == ()


def test_check_all_refuses_an_upgrade_that_traps_on_any_instance(node: MemoryNode) -> None:
    """``check_all`` runs the migration on every instance first: one that traps refuses the
    upgrade, naming it, and nothing changes; without traps it upgrades as usual."""
    c = client(node)
    for i in range(30):
        c.send("tally", Add(i), key=f"k{i}")
    c.send("tally", Add(13), key="zz")
    with pytest.raises(UpgradeRejected, match=r"traps on 2 instance\(s\).*'k13'.*'zz'") as e:
        c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2), check_all=True)
    assert e.value.code == "migration_trap"
    assert c.status("tally").identity == tally_v1.identity
    assert c.status("tally", key="k13").identity == tally_v1.identity
    c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe), check_all=True)
    assert c.status("tally").identity == tally_v2.identity


def test_the_sweeper_migrates_untouched_instances_at_its_budget(node: MemoryNode) -> None:
    """Each sweep migrates at most its budget; then no instance runs the old code and the
    status counts them all on the new one."""
    c = client(node)
    for i in range(25):
        c.send("tally", Add(i + 20), key=f"k{i:02}")
    c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe))
    assert c.status("tally").sweep.remaining == 25  # type: ignore[union-attr]
    assert node.sweep(10) == 10
    assert c.status("tally").sweep.remaining == 15  # type: ignore[union-attr]
    while node.sweep(10):
        pass
    status = c.status("tally")
    assert [(x.identity, x.instances) for x in status.codes] == [(tally_v2.identity, 25)]
    assert status.sweep is not None and status.sweep.migrated == 25
    node.reopen()
    c = client(node)
    assert c.status("tally", key="k03").state == Tally(23, 7)
    c.upgrade("tally", Upgrade(tally_v2, tally_v3, v2_to_v3))
    assert node.sweep(1000, seconds=0) == 1  # out of time: one instance a slice at least
    assert c.status("tally").sweep.remaining == 24  # type: ignore[union-attr]


def test_a_served_node_sweeps_in_slices_with_the_loop_free_between_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's own sweeper pays a tick's share in slices, each at most SWEEP_SLICE, going on
    at the loop's next turn: with a slice of 0 s (one instance each) 300 instances are migrated
    in 300 slices or more, within a few ticks, not one instance a tick."""
    import time  # noqa: PLC0415

    from hotswap.node import server  # noqa: PLC0415
    from served import Served  # noqa: PLC0415

    monkeypatch.setattr(server, "SWEEP_SLICE", 0.0)
    slices: list[int] = []
    sweep = Service.sweep

    def counted(self: Service, budget: int, seconds: float | None = None) -> int:
        looked = sweep(self, budget, seconds)
        slices.append(looked)
        return looked

    monkeypatch.setattr(Service, "sweep", counted)
    config = NodeConfig(sweep_rate=100_000)
    with Served(tmp_path, {"tally": tally_v1}, config=config) as node:
        c = Client(node.address, machines=MACHINES)
        for i in range(300):
            c.send("tally", Add(i), key=f"k{i:03}")
        c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe))
        deadline = time.monotonic() + 10
        while c.status("tally").sweep.remaining and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.05)
        status = c.status("tally")
        assert [(x.identity, x.instances) for x in status.codes] == [(tally_v2.identity, 300)]
        c.close()
    assert sum(n > 0 for n in slices) >= 300 and max(slices) == 1


def test_checkpoints_on_the_same_generation_rewrite_the_state_and_others_the_whole_row() -> None:
    """With ``cache=2``, instances leave the cache at every other input: their checkpoints on
    the generation already stored rewrite state, count and entry, and after an upgrade the
    migrated ones' rows name the new generation (so its code, which the machine's history
    gives: the row no longer holds it); every row is what its instance is, in the store and
    after a restart."""
    with MemoryNode({"tally": tally_v1}, config=NodeConfig(cache=2)) as node:
        c = client(node)
        keys = [f"k{i}" for i in range(5)]
        for round_ in range(3):
            for i, key in enumerate(keys):
                c.send("tally", Add(10 * i + round_), key=key)
        db = node.service.store.db

        def rows() -> list[tuple[object, ...]]:
            node.service.checkpoint()  # the live ones too
            query = "SELECT key, generation, inputs FROM instances ORDER BY key"
            history = node.service.registry.get("tally").history
            return [(k, g, history[g].identity, n) for k, g, n in db.execute(query)]

        assert rows() == [(k, 0, tally_v1.identity, 3) for k in keys]
        c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe))
        for key in [*keys, keys[0]]:  # migrated by their inputs, evicted by the next ones
            c.send("tally", Add(1), key=key)
        assert rows() == [
            ("k0", 1, tally_v2.identity, 5),
            ("k1", 1, tally_v2.identity, 4),
            ("k2", 1, tally_v2.identity, 4),
            ("k3", 1, tally_v2.identity, 4),
            ("k4", 1, tally_v2.identity, 4),
        ]
        want = {k: c.status("tally", key=k).state for k in keys}
        node.reopen()
        c = client(node)
        assert {k: c.status("tally", key=k).state for k in keys} == want


def test_the_cache_is_bounded_and_evicted_instances_come_back_exact() -> None:
    """With ``cache=8`` at most 8 instances are live; the others are read back from their
    checkpoints and the log, after a restart too."""
    with MemoryNode({"tally": tally_v1}, config=NodeConfig(cache=8)) as node:
        c = client(node)
        want: dict[str, int] = {}
        rng = random.Random(3)
        for _ in range(300):
            key = f"k{rng.randrange(40)}"
            n = rng.randrange(10)
            c.send("tally", Add(n), key=key)
            want[key] = want.get(key, 0) + n
            assert len(node.service.registry.machines["tally"].keyed.cache) <= 8
        node.reopen()
        c = client(node)
        for key, total in want.items():
            assert c.status("tally", key=key).state == total


def test_a_commit_writes_only_the_instances_its_batch_made_or_ran_far(node: MemoryNode) -> None:
    """Group commit appends inputs; an existing instance's checkpoint is not rewritten by an
    input, so a commit's cost does not grow with the number of instances."""
    c = client(node)
    for i in range(200):
        c.send("tally", Add(1), key=f"k{i}")
    statements: list[str] = []
    node.service.store.db.set_trace_callback(statements.append)
    for i in range(50):
        c.send("tally", Add(1), key=f"k{i}")
    node.service.store.settle()  # the inputs the input log holds go into SQLite
    node.service.store.db.set_trace_callback(None)
    assert not [s for s in statements if "instances" in s]
    logged = [s for s in statements if "INSERT INTO log" in s]
    assert sum(s.count(", 'input', ") for s in logged) == 50  # rows, a few to a statement
    assert len(logged) < 50


def test_a_deleted_instance_is_gone_and_a_new_input_starts_it_afresh(node: MemoryNode) -> None:
    """Delete is logged: after a restart the key is still gone; the next input starts anew."""
    c = client(node)
    c.send("tally", Add(4), key="gone")
    c.send("tally", Add(4), key="kept")
    assert c.delete("tally", "gone").inputs == 1
    node.reopen()
    c = client(node)
    assert c.instances("tally").keys == ("kept",)
    assert c.status("tally").instances == 1
    assert c.send("tally", Add(1), key="gone") == 1
    node.reopen()
    assert client(node).status("tally", key="gone").state == 1


def test_instances_page_through_keys_by_prefix_and_position(node: MemoryNode) -> None:
    """Keys come in order, by prefix, after a key, at most ``limit`` a page."""
    c = client(node)
    keys = [f"user-{i:02}" for i in range(25)] + ["order-1", "order-2", "\U0010ffff", "é"]
    for key in keys:
        c.send("tally", Add(1), key=key)
    page = c.instances("tally", prefix="user-", limit=10)
    assert page.keys == tuple(f"user-{i:02}" for i in range(10)) and page.more
    rest = c.instances("tally", prefix="user-", after=page.after, limit=100)
    assert rest.keys == tuple(f"user-{i:02}" for i in range(10, 25)) and not rest.more
    assert c.instances("tally", prefix="order").keys == ("order-1", "order-2")
    assert c.instances("tally", prefix="\U0010ffff").keys == ("\U0010ffff",)
    assert c.instances("tally", after="user-24").keys == ("é", "\U0010ffff")
    with pytest.raises(HotswapError, match=r"limit.*\[1, 1000\]"):
        c.instances("tally", limit=1001)


def test_deploy_adds_a_machine_to_a_running_node(node: MemoryNode) -> None:
    """A deployed machine serves at once and is there after a restart; deploying it again is
    nothing, on other code a clear error."""
    c = client(node)
    done = c.deploy("counter", counter_sm)
    assert done.started and done.identity == counter_sm.identity
    c.send("counter", Incr(), key="x")
    assert not c.deploy("counter", counter_sm).started
    with pytest.raises(NodeError, match=r"already runs .*upgrade it"):
        c.deploy("counter", counter_sm2)
    with pytest.raises(NodeError, match="module rejected"):
        c.deploy("broken", b"not a module")
    node.reopen()
    c = client(node)
    assert [name for name, _ in c.machines()] == ["counter", "tally"]
    assert c.send("counter", Count(), key="x") == 1


def test_trials_and_dry_runs_are_refused_on_a_machine_with_instances(node: MemoryNode) -> None:
    """They rehearse one state: refused with what to do instead; keyed inputs wait for a
    trial on the default instance to end."""
    c = client(node)
    c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe), trial=5)
    with pytest.raises(NodeError, match=r"trial upgrade.*confirm or revert"):
        c.send("tally", Add(1), key="a")
    c.confirm("tally")
    c.send("tally", Add(1), key="a")
    with pytest.raises(UpgradeRejected, match=r"1 keyed instance.*--check-all"):
        c.upgrade("tally", Upgrade(tally_v2, tally_v3, v2_to_v3), trial=5)
    with pytest.raises(UpgradeRejected, match="a dry run rehearses one state"):
        c.dry_run("tally", Upgrade(tally_v2, tally_v3, v2_to_v3))
    # for code that is not running, both are refused as the upgrade is: wrong_version first
    # (docs/protocol.md 6.9: a dry run passes every check of the upgrade first)
    for rehearse in (
        lambda: c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe), trial=5),
        lambda: c.dry_run("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe)),
    ):
        with pytest.raises(UpgradeRejected) as refused:
            rehearse()
        assert refused.value.code == "wrong_version", refused.value
    assert c.status("tally").identity == tally_v2.identity


def test_the_asyncio_client_reaches_keyed_instances(node: MemoryNode) -> None:
    """send, status, instances, delete and deploy with keys, from asyncio."""

    async def scenario() -> None:
        c = await AsyncClient.over(node.async_connection(), machines=MACHINES)
        assert await c.send("tally", Add(3), key="a") == 3
        assert (await c.status("tally", key="a")).state == 3
        assert (await c.instances("tally")).keys == ("a",)
        assert (await c.delete("tally", "a")).inputs == 1
        assert (await c.deploy("counter", counter_sm)).started
        await c.close()

    asyncio.run(scenario())


def test_a_live_instance_is_checkpointed_before_its_inputs_leave_the_replay_window(
    tmp_path: Path,
) -> None:
    """Recovery reads only the last ``replay_window`` log entries: a hot instance that never
    leaves the cache is checkpointed before its oldest unsaved input gets that old, so a
    restart after a kill still finds every input."""
    node = MemoryNode({"tally": tally_v1}, data=tmp_path)
    try:
        node.service.store.replay_window = 40
        node.service.instances.window = 40
        c = client(node)
        for i in range(200):
            c.send("tally", Add(1), key="hot")
            c.send("tally", Add(1), key=f"cold{i % 7}")
        node.service.store.close()
        node.service = open_service_small_window(node, 40)
        c = client(node)
        assert c.status("tally", key="hot").state == 200
        assert sum(c.status("tally", key=f"cold{i}").state for i in range(7)) == 200
    finally:
        node.close()


def open_service_small_window(node: MemoryNode, window: int) -> Service:
    """Reopen ``node``'s store (as after a kill) with a replay window of ``window``."""
    store = Store(node.data / "node.sqlite3")
    store.replay_window = window
    registry = Registry()
    for machine in store.recover().machines:
        registry.restore(machine)
    return Service(registry, store, node.trace)


def test_a_release_switches_every_machine_and_their_instances_migrate_lazily() -> None:
    """A release changes each machine's code once; their instances migrate when touched."""
    with MemoryNode({"tally": tally_v1, "counter": counter_sm}) as node:
        c = client(node)
        c.send("tally", Add(20), key="a")
        c.send("counter", Incr(), key="a")
        c.release(
            {
                "tally": Upgrade(tally_v1, tally_v2, v1_to_v2_safe),
                "counter": Upgrade(counter_sm, counter_sm2),
            }
        )
        assert c.send("tally", Add(1), key="a") == 1021
        assert c.status("counter", key="a").state == (1, 0)
        node.reopen()
        c = client(node)
        assert c.status("tally", key="a").state == Tally(21, 7)
        assert c.status("counter", key="a").identity == counter_sm2.identity


def test_a_chain_of_migrations_never_starts_past_its_target() -> None:
    """After A -> B -> A, an instance on the first A needs no migration to reach the last A,
    but to reach B (as recovery replays an input logged while B ran) it needs the one to B."""
    a, b = "a" * 64, "b" * 64
    history = [
        Change(a, HistoryKind.START, 0, 0.0),
        Change(b, HistoryKind.UPGRADE, 0, 0.0, "m" * 64),
        Change(a, HistoryKind.UPGRADE, 0, 0.0, "n" * 64),  # back to A (a rollback)
    ]
    assert chain_start(history, 0) == 2
    assert chain_start(history, 0, target=1) == 0
    assert chain_start(history, 1, target=1) == 1


def test_an_upgrade_leaves_its_modules_loaded_for_the_instances_it_migrates(
    node: MemoryNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first touch of an instance after an upgrade runs the upgrade's migration: the one
    the upgrade loaded, not the stored bytes read and loaded again (decoded, verified and
    compiled on the event loop, which a large migration would stall)."""
    c = client(node)
    c.send("tally", Add(5), key="a")
    c.upgrade("tally", Upgrade(tally_v1, tally_v2, v1_to_v2_safe))
    store = node.service.store
    reads: list[str] = []
    monkeypatch.setattr(store, "module", reads.append)
    assert c.send("tally", Add(1), key="a") == 1006  # v2 answers the total plus 1,000
    assert c.status("tally", key="a").identity == tally_v2.identity
    assert reads == []
