"""The node's trace: large values are cut short at a cost that does not grow with them, and a
slow reader of the node's output never blocks it."""

from __future__ import annotations

import io
import os
import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from hotswap.cam.build import machine_module
from hotswap.cam.loaded import LoadedModule, load
from hotswap.cam.values import encode_value
from hotswap.client import Client
from hotswap.examples import handbuilt
from hotswap.lang.evaluate import Value
from hotswap.lang.persistent import OMap, make_list
from hotswap.lang.terms import (
    FST,
    ID,
    SND,
    TERMINAL,
    Case,
    Empty,
    Fanout,
    Fold,
    Inl,
    Lit,
    Op,
    Prim,
    Term,
    compose,
)
from hotswap.lang.types import INT, STR, UNIT, ListT, MapT, Prod, Type
from hotswap.lang.values import render
from hotswap.node.memory import MemoryNode
from hotswap.node.trace import BACKLOG, SHOWN, Trace, clip, shorten
from strategies import data_types, data_values

COUNTS = MapT(INT, INT)
#: ``(k, m) -> (m | {k: m.get(k, 0) + 1}, that count)``
BUMP: Term = compose(
    Fanout(
        ID,
        compose(
            Fanout(SND, FST), Prim(Op.MAP_GET), Case(Lit(0), ID), Fanout(ID, Lit(1)), Prim(Op.ADD)
        ),
    ),
    Fanout(
        compose(Fanout(compose(FST, SND), Fanout(compose(FST, FST), SND)), Prim(Op.MAP_INSERT)),
        SND,
    ),
)


def counts_module(entries: int) -> LoadedModule:
    """A map of counts by key, starting with ``entries`` keys 0, 1, ... counted 0 times."""
    insert = compose(SND, Fanout(SND, Fanout(FST, Lit(0))), Prim(Op.MAP_INSERT), Inl(UNIT))
    keys = compose(Fanout(Lit(0), Lit(entries)), Prim(Op.RANGE))
    init = compose(
        Fanout(TERMINAL, Fanout(keys, Empty(COUNTS))), Fold(insert), Case(ID, Empty(COUNTS))
    )
    return load(machine_module(INT, COUNTS, INT, init, BUMP))


@settings(max_examples=300)
@given(st.data(), st.integers(0, 60))
def test_a_clipped_value_shows_what_the_whole_value_shows(data: st.DataObject, room: int) -> None:
    """The text of a value cut down by ``clip`` begins as the whole value's text does, and is
    cut only when that text is longer than shown (then naming the size of what was cut)."""
    t = data.draw(data_types())
    v = data.draw(data_values(t, max_size=12))
    whole = render(v, t)
    clipped, cut = clip(v, t, room)
    text = render(clipped, t)
    assert text[:room] == whole[:room]
    if cut:
        assert len(whole) > room
        assert shorten(text, cut, room) == f"{whole[:room]} ... (cut at {room} characters: {cut})"
    else:
        assert clipped == v
        assert shorten(text, cut, room) == shorten(whole, "", room)


def test_what_a_cut_names() -> None:
    big = OMap((i, i) for i in range(1000))
    _, cut = clip(big, COUNTS)
    assert cut == "a map of 1,000 entries"
    _, cut = clip((make_list(range(5000)), "x" * 300), Prod(ListT(INT), STR))
    assert cut == "a list of 5,000 items"  # the largest of the collections cut
    _, cut = clip("x" * 300, STR)
    assert cut == "a string of 300 characters"
    assert clip(make_list(range(10)), ListT(INT)) == (make_list(range(10)), "")
    wide: Type = INT
    for _ in range(6):
        wide = Prod(wide, wide)  # 64 ints, no collection: cut as text
    value: Value = 10**15
    for _ in range(6):
        value = (value, value)
    text = shorten(render(*clip(value, wide)[:1], wide), "")
    assert text.endswith(f" ... ({len(render(value, wide)) - SHOWN:,} more characters)")


def test_the_trace_of_a_large_state_costs_what_it_shows() -> None:
    """A state of 200,000 map entries (4 MB of text) is traced as fast as a small one."""
    code = counts_module(10)
    times = []
    for state in (code.init(), OMap((i, 0) for i in range(200_000))):
        out = io.StringIO()
        trace = Trace("seed", out)
        started = time.perf_counter()
        for _ in range(20):
            trace.step(code, 1, state)
        times.append(time.perf_counter() - started)
        lines = out.getvalue().splitlines()
        assert lines[0] == "Output:    Int 1"
    assert lines[1].startswith("New state: Map [Int 0 => Int 0, Int 1 => Int 0, ")
    assert lines[1].endswith(" ... (cut at 200 characters: a map of 200,000 entries)")
    assert len(lines[1]) < 300
    assert times[1] < 10 * times[0] + 0.05  # rendering it whole takes about a second
    out = io.StringIO()
    Trace("names", out).step(code, 1, state)  # no names in the module: the seed syntax, cut
    assert out.getvalue().splitlines()[1] == lines[1]


def test_a_served_node_traces_large_states_cut_short() -> None:
    out = io.StringIO()
    machines = {"counts": counts_module(5000).data}
    with MemoryNode(machines, trace=Trace("seed", out)) as node:
        Client(transport=node.connection()).send_raw("counts", encode_value(3, INT))
    state = [line for line in out.getvalue().splitlines() if line.startswith("New state: ")]
    assert state == [
        "New state: "
        + render(OMap([(i, int(i == 3)) for i in range(5000)]), COUNTS)[:SHOWN]
        + " ... (cut at 200 characters: a map of 5,000 entries)"
    ]


class _Pipe:
    """A pipe whose reader starts only when told: until then, writes to it fill up and block."""

    def __init__(self) -> None:
        read, write = os.pipe()
        self.reader = os.fdopen(read, "rb")
        self.out = os.fdopen(write, "w", encoding="utf-8")
        self.data = b""
        self._thread = threading.Thread(target=self._drain)

    def start_reading(self) -> None:
        self._thread.start()

    def _drain(self) -> None:
        self.data = self.reader.read()

    def finish(self) -> str:
        self.out.close()
        self._thread.join(10)
        self.reader.close()
        return self.data.decode()


def test_a_slow_reader_never_blocks_the_node() -> None:
    """In the background the trace goes on at once whatever the reader does: what does not fit
    in the backlog is dropped and counted, and the node's own notes are never dropped."""
    pipe = _Pipe()
    trace = Trace("seed", pipe.out, background=True)
    code = load(handbuilt.counter_module())
    trace.note("Listening on 127.0.0.1:1")
    started = time.perf_counter()
    entries = 2 * BACKLOG // len("Output:    L Unit\nNew state: Int 1000000\n\n")
    for i in range(entries):
        trace.step(code, (0, ()), 1_000_000 + i)
    trace.note("Stopping")
    assert time.perf_counter() - started < 5  # blocked, it would wait for the reader forever
    pipe.start_reading()
    trace.close(10)
    text = pipe.finish()
    assert text.startswith("Listening on 127.0.0.1:1\nOutput:    L Unit\nNew state: Int 1000000\n")
    assert text.endswith("Stopping\n") or "Stopping\n" in text
    dropped = [line for line in text.splitlines() if line.startswith("(trace: ")]
    assert len(dropped) >= 1 and dropped[-1].endswith("entries dropped: the output was too slow)")
    shown = text.count("Output:    ")
    counted = sum(int(line.split()[1].replace(",", "")) for line in dropped)
    assert shown + counted == entries and counted > 0
    assert trace.broken is None


def test_a_closed_output_stops_the_trace_not_the_node() -> None:
    pipe = _Pipe()
    trace = Trace("seed", pipe.out, background=True)
    pipe.reader.close()  # nobody will ever read: writing fails with EPIPE
    code = load(handbuilt.counter_module())
    deadline = time.monotonic() + 10
    while trace.broken is None and time.monotonic() < deadline:
        trace.step(code, (0, ()), 1)
        time.sleep(0.001)
    assert trace.broken is not None and not trace.enabled
    trace.step(code, (0, ()), 2)  # and goes on doing nothing
    trace.close(1)
    pipe.out.close()


def test_without_a_file_descriptor_the_trace_writes_at_once() -> None:
    out = io.StringIO()
    trace = Trace("seed", out, background=True)
    trace.step(load(handbuilt.counter_module()), (0, ()), 1)
    assert out.getvalue() == "Output:    L Unit\nNew state: Int 1\n\n"
    trace.close()


def test_a_key_cut_short_is_not_merged_with_the_key_it_then_reads_as() -> None:
    """A map's key cut short by the room left could read as an earlier key ("k41" cut to
    "k4"): the clipped map then showed the earlier key with the later value."""
    entries = OMap((f"k{i}", i) for i in range(3000))
    t = MapT(STR, INT)
    whole = render(entries, t)
    for room in range(1, 120):
        clipped, _ = clip(entries, t, room)
        assert render(clipped, t)[:room] == whole[:room], room
        # every key shown whole shows its own value (the last may be cut: then no key)
        assert all(entries[k] == x for k, x in clipped.items() if k in entries), room
