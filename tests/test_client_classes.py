"""Values come back from a node as the user's own classes, or as a documented generic Record.

A rate limiter (version 1 here; version 2 compiled from source text, so this module does not
have its classes) on an in-memory node. Outputs and states of code whose classes the client
knows (from the module of a value sent, or from machines it was given) are instances of those
classes, so ``match``, ``isinstance`` and ``==`` work; records it has no class for come back as
:class:`hotswap.names.schema.Record`, with one :class:`ClassesUnknownWarning`.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from hotswap.client import AsyncClient, ClassesUnknownWarning, Client, Record, Upgrade
from hotswap.client.convert import Classes
from hotswap.dsl import Machine, compile_source, machine
from hotswap.names.schema import RecordSchema, UnionSchema, from_core, to_core
from hotswap.names.section import module_schemas
from hotswap.node.memory import MemoryNode

LIMIT = 10


@dataclass(frozen=True)
class Take:
    n: int


@dataclass(frozen=True)
class Refill:
    pass


@dataclass(frozen=True)
class Allowed:
    remaining: int


@dataclass(frozen=True)
class Denied:
    pass


@dataclass(frozen=True)
class Bucket:
    tokens: int


@machine(init=Bucket(tokens=LIMIT))
def limiter(inp: Take | Refill, state: Bucket) -> tuple[Bucket, Allowed | Denied]:
    match inp:
        case Take(n):
            if n <= state.tokens:
                return Bucket(tokens=state.tokens - n), Allowed(remaining=state.tokens - n)
            return state, Denied()
        case Refill():
            return Bucket(tokens=LIMIT), Allowed(remaining=LIMIT)


#: Version 2, whose classes this module lacks: an ``Allowed`` with another field and a new
#: ``Refused``; ``Bucket`` (the state) has the same name and fields as ours.
V2_SOURCE = """
@dataclass(frozen=True)
class Take:
    n: int

@dataclass(frozen=True)
class Refill:
    pass

@dataclass(frozen=True)
class Allowed:
    remaining: int
    limit: int

@dataclass(frozen=True)
class Refused:
    wait: int

@dataclass(frozen=True)
class Bucket:
    tokens: int

@machine(init=Bucket(tokens=10))
def limiter_v2(inp: Take | Refill, state: Bucket) -> tuple[Bucket, Allowed | Refused]:
    match inp:
        case Take(n):
            if n <= state.tokens:
                return Bucket(tokens=state.tokens - n), Allowed(state.tokens - n, 10)
            return state, Refused(wait=n - state.tokens)
        case Refill():
            return Bucket(tokens=10), Allowed(remaining=10, limit=10)
"""


@cache
def limiter_v2() -> Machine[..., object]:
    """Version 2, made by a function, not held by this module: a machine the module holds would
    teach the client its classes (it learns from the module of the values sent)."""
    v2 = compile_source(V2_SOURCE)["limiter_v2"]
    assert isinstance(v2, Machine)
    return v2


def _v2_class(name: str) -> Any:
    output = limiter_v2().output_schema
    assert isinstance(output, UnionSchema)
    for alt in output.alternatives:
        if isinstance(alt, RecordSchema) and alt.name == name and alt.cls is not None:
            return alt.cls
    raise AssertionError(name)


def _upgrade_elsewhere(node: MemoryNode) -> None:
    with Client(transport=node.connection()) as other:
        other.upgrade("rl", Upgrade(limiter, limiter_v2()))


def test_outputs_are_the_users_classes_without_remember() -> None:
    """No remember(), no machines=: the classes come from the module of the value sent."""
    with MemoryNode({"rl": limiter}) as node, Client(transport=node.connection()) as c:
        out = c.send("rl", Take(n=1))
        assert type(out) is Allowed and isinstance(out, Allowed)
        assert out == Allowed(remaining=9)
        match out:
            case Allowed(remaining=left):
                assert left == 9
            case _:
                pytest.fail(f"{out!r} did not match Allowed(...)")
        assert c.send("rl", Take(n=20)) == Denied()
        assert isinstance(c.send("rl", Refill()), Allowed)


def test_status_state_is_the_users_class() -> None:
    """After a send; and on a fresh client, status first: the running code is that of this
    program's (compiled) limiter, whose module gives the classes."""
    with MemoryNode({"rl": limiter}) as node, Client(transport=node.connection()) as c:
        fresh = c.status("rl").state
        assert type(fresh) is Bucket and fresh == Bucket(tokens=LIMIT)
        c.send("rl", Take(n=3))
        state = c.status("rl").state
        assert type(state) is Bucket and state == Bucket(tokens=7)
        match state:
            case Bucket(tokens=t):
                assert t == 7
            case _:
                pytest.fail(f"{state!r} did not match Bucket(...)")


def test_machines_passed_to_the_client_give_their_classes() -> None:
    """A machine given to the client: its classes even before any value was sent (status
    first), and for code this module has no classes for (version 2, upgraded elsewhere)."""
    with MemoryNode({"rl": limiter}) as node:
        with Client(transport=node.connection(), machines=[limiter, limiter_v2()]) as c:
            assert c.status("rl").state == Bucket(tokens=LIMIT)
            _upgrade_elsewhere(node)
            out = c.send("rl", Take(n=1))  # re-encoded by name for version 2
            assert type(out) is _v2_class("Allowed") and not isinstance(out, Allowed)
            assert (out.remaining, out.limit) == (9, 10)
            refused = c.send("rl", Take(n=50))
            assert type(refused) is _v2_class("Refused") and refused.wait == 41
        with pytest.raises(TypeError, match="DSL machines"):
            Client(transport=node.connection(), machines=[b"not a machine"])


def test_the_async_client_takes_machines() -> None:
    async def run(node: MemoryNode) -> None:
        client = await AsyncClient.over(node.async_connection(), machines=[limiter])
        try:
            state = (await client.status("rl")).state
            assert type(state) is Bucket and state == Bucket(tokens=LIMIT)
            assert await client.send("rl", Take(n=4)) == Allowed(remaining=6)
        finally:
            await client.close()

    with MemoryNode({"rl": limiter}) as node:
        asyncio.run(run(node))


def test_code_whose_classes_this_program_lacks_gives_records_and_one_warning() -> None:
    """Upgraded elsewhere to version 2: its outputs come back as Record (never a class that
    pretends to be ours), the state (same name and fields as our Bucket) as our Bucket, and the
    client warns once, naming what it lacked and how to fix it."""
    with MemoryNode({"rl": limiter}) as node, Client(transport=node.connection()) as c:
        assert c.send("rl", Take(n=1)) == Allowed(remaining=9)
        _upgrade_elsewhere(node)
        with pytest.warns(ClassesUnknownWarning) as caught:
            out = c.send("rl", Take(n=1))
            refused = c.send("rl", Take(n=50))
            state = c.status("rl").state
        assert len(caught) == 1
        message = str(caught[0].message)
        assert limiter_v2().identity[:12] in message and "'rl'" in message
        assert "Allowed, Refused" in message and "machines=[...]" in message
        assert caught[0].filename == __file__  # points at the user's call
        assert type(out) is Record and type(out).__name__ == "Record"
        assert not isinstance(out, Allowed)
        assert out == Record("Allowed", remaining=8, limit=10) and out != Allowed(remaining=8)
        assert (out.record_name, out.remaining, out.limit) == ("Allowed", 8, 10)
        assert repr(out) == "Allowed(remaining=8, limit=10)"
        match refused:
            case Record(record_name="Refused", wait=wait):
                assert wait == 42
            case _:
                pytest.fail(f"{refused!r} did not match Record(record_name='Refused')")
        assert type(state) is Bucket and state == Bucket(tokens=8)
        c.session.remember(limiter_v2())  # given the machine, its classes come back
        assert type(c.send("rl", Refill())) is _v2_class("Allowed")


def test_a_class_with_the_same_name_but_other_fields_is_not_used() -> None:
    """This module's Allowed(remaining) never stands for version 2's Allowed(remaining, limit),
    nor a class whose fields are the same names in another order."""

    @dataclass(frozen=True)
    class Swapped:  # Allowed(limit, remaining), under the name Allowed
        limit: int
        remaining: int

    Swapped.__name__ = "Allowed"
    classes = Classes()
    classes.learn_value((Take(n=1), 5))  # a tuple holding a dataclass: its module's classes
    classes.add(Swapped, given=True)
    assert classes.find("Allowed", ("remaining",)) is Allowed
    assert classes.find("Allowed", ("remaining", "limit")) is None
    assert classes.find("Allowed", ("limit", "remaining")) is Swapped
    with MemoryNode({"rl": limiter}) as node, Client(transport=node.connection()) as c:
        c.send("rl", Take(n=1))
        _upgrade_elsewhere(node)
        with pytest.warns(ClassesUnknownWarning, match="Allowed"):
            out = c.send("rl", Take(n=1))
        assert type(out) is Record and not isinstance(out, Allowed)


#: This module's limiter again, as another module would have it: classes of the same names and
#: fields as ours, but other classes.
COPY_SOURCE = """
@dataclass(frozen=True)
class Take:
    n: int

@dataclass(frozen=True)
class Refill:
    pass

@dataclass(frozen=True)
class Allowed:
    remaining: int

@dataclass(frozen=True)
class Denied:
    pass

@dataclass(frozen=True)
class Bucket:
    tokens: int

@machine(init=Bucket(tokens=10))
def limiter_copy(inp: Take | Refill, state: Bucket) -> tuple[Bucket, Allowed | Denied]:
    match inp:
        case Take(n):
            if n <= state.tokens:
                return Bucket(tokens=state.tokens - n), Allowed(remaining=state.tokens - n)
            return state, Denied()
        case Refill():
            return Bucket(tokens=10), Allowed(remaining=10)
"""


def test_the_reply_to_a_value_comes_in_the_classes_of_its_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two modules with an Allowed(remaining): each send's reply is in the classes of the
    module of the value sent, whatever was learned before."""
    (tmp_path / "limiter_copy_module.py").write_text(
        "from dataclasses import dataclass\nfrom hotswap.dsl import machine\n" + COPY_SOURCE
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        theirs = importlib.import_module("limiter_copy_module")
        assert theirs.Allowed is not Allowed
        with MemoryNode({"rl": limiter}) as node, Client(transport=node.connection()) as c:
            assert type(c.send("rl", theirs.Take(n=1))) is theirs.Allowed
            assert type(c.send("rl", Take(n=1))) is Allowed
            assert type(c.send("rl", theirs.Take(n=1))) is theirs.Allowed
            assert type(c.send("rl", Refill())) is Allowed
            assert type(c.status("rl").state) in (Bucket, theirs.Bucket)
    finally:
        sys.modules.pop("limiter_copy_module", None)


def test_records_are_immutable_values() -> None:
    r = Record("Allowed", remaining=9)
    assert r == Record("Allowed", remaining=9) and hash(r) == hash(Record("Allowed", remaining=9))
    assert r != Record("Allowed", remaining=8) and r != Record("Other", remaining=9)
    assert r != Allowed(remaining=9) and not isinstance(r, Allowed)
    assert r.record_fields == {"remaining": 9} and "remaining" in dir(r)
    with pytest.raises(AttributeError, match="immutable"):
        r.remaining = 1
    with pytest.raises(AttributeError, match="no field 'limit'"):
        _ = r.limit
    assert pickle.loads(pickle.dumps(r)) == r
    match r:
        case Record("Allowed", remaining=n):
            assert n == 9
        case _:
            pytest.fail("Record('Allowed') did not match")


def test_machine_run_keeps_its_classes_and_decoded_names_give_records() -> None:
    """The DSL's own conversions are unchanged (schemas with classes); schemas decoded from a
    names section build Records, which convert back by name."""
    assert limiter.run(Take(n=2), Bucket(tokens=5)) == (Bucket(tokens=3), Allowed(remaining=3))
    new_state, out = limiter.run(Take(n=9), Bucket(tokens=5))
    assert type(new_state) is Bucket and type(out) is Denied
    decoded = module_schemas(limiter.loaded)
    assert decoded is not None
    back = from_core(decoded["output"], limiter.to_core_output(Allowed(remaining=3)))
    assert back == Record("Allowed", remaining=3) and type(back) is Record
    assert to_core(decoded["output"], back) == limiter.to_core_output(Allowed(remaining=3))
    assert from_core(limiter.output_schema, to_core(decoded["output"], back)) == Allowed(3)
