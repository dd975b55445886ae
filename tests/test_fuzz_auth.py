"""A fuzz of a node that authenticates its clients (``--auth``): the handshake and every message,
with and without credentials of each role, well formed, ill formed and mutated, pipelined or
one at a time. Only our own errors may come back (replies, error codes, a goodbye), never a
crash, and nothing may change without the role it needs.

A few seconds in the suite; ``HOTSWAP_FUZZ_SECONDS=600`` (``make fuzz`` runs it for two
minutes) for a longer run, ``HOTSWAP_FUZZ_SEED`` to replay one. The seed is printed on failure.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import cbor2
import pytest

from hotswap.auth import Credentials, Principal
from hotswap.cam.values import encode_value
from hotswap.errors import LocalProtocolError, RemoteProtocolError
from hotswap.examples.counter import counter_sm, counter_sm2, downgrade_state, upgrade_state
from hotswap.node.memory import MemoryNode
from hotswap.node.service import ROLE_OF, Conversation, NodeConfig, Service
from hotswap.protocol.codec import SCHEMA_OF, decode_message, encode_message
from hotswap.protocol.events import (
    Confirm,
    Delete,
    Deploy,
    DryRun,
    Error,
    GetModule,
    Goodbye,
    Hello,
    InstancesRequest,
    Machines,
    Release,
    ReleaseItem,
    Request,
    Revert,
    Send,
    SendChecked,
    Status,
    UpgradeRequest,
    Welcome,
)
from hotswap.protocol.framing import FrameReader, frame
from hotswap.protocol.states import GOODBYE_CODES
from instance_machines import tally_v1, tally_v2, v1_to_v2

SECONDS = float(os.environ.get("HOTSWAP_FUZZ_SECONDS", "3"))
#: Requests that may change what a node holds: they need their role (``ROLE_OF``).
CHANGING = (Send, SendChecked, UpgradeRequest, Release, Confirm, Revert, Deploy, Delete)


@dataclass
class World:
    """The node under fuzz and what the fuzz draws from."""

    service: Service
    tokens: dict[str, str]  # principal -> token
    modules: list[bytes]
    inputs: list[bytes]


@pytest.fixture
def world() -> Iterator[World]:
    credentials = Credentials()
    tokens = {role: credentials.add(f"fuzz-{role}", [role]) for role in ("read", "send")}
    tokens |= {role: credentials.add(f"fuzz-{role}", [role]) for role in ("upgrade", "admin")}
    config = NodeConfig(credentials=credentials, max_input=4096)
    machines = {"counter": counter_sm, "tally": tally_v1}
    with MemoryNode(machines, config=config) as node:
        modules = [
            *(m.loaded.data for m in (counter_sm, counter_sm2, tally_v1, tally_v2)),
            *(m.loaded.data for m in (upgrade_state, downgrade_state, v1_to_v2)),
        ]
        counter_input = counter_sm.loaded.machine
        assert counter_input is not None
        inputs = [encode_value((i, ()), counter_input.input) for i in (0, 1)]
        inputs += [b"", b"\x00", b"\x05", b"\xff" * 9, os.urandom(20)]
        yield World(node.service, tokens, modules, inputs)


def test_only_our_own_errors_and_nothing_without_its_role(world: World) -> None:
    seed = int(os.environ.get("HOTSWAP_FUZZ_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    deadline = time.monotonic() + SECONDS
    stats = {"connections": 0, "frames": 0, "changes": 0, "errors": 0}
    try:
        while time.monotonic() < deadline:
            _connection(world, rng, stats)
    except BaseException as e:
        raise AssertionError(f"fuzz seed {seed} (HOTSWAP_FUZZ_SEED={seed}): {e!r}") from e
    print(f"\nfuzz seed {seed}: {stats}")
    assert stats["connections"] > 20 and stats["frames"] > 100


def _connection(world: World, rng: random.Random, stats: dict[str, int]) -> None:
    """One connection: a hello (or not), then a few frames, one at a time or pipelined."""
    stats["connections"] += 1
    conversation = Conversation(world.service)
    version = rng.choice([3] * 20 + [2, 1, 0, 4])
    token = rng.choice([*world.tokens.values()] * 4 + [None, "hst_nope", "", "x" * 200])
    frames = [] if rng.random() < 0.03 else [_hello(rng, version, token)]
    frames += [_frame(world, rng, min(max(version, 1), 3)) for _ in range(rng.randint(1, 8))]
    if rng.random() < 0.3:  # pipelined: one chunk, split anywhere
        data = b"".join(frames)
        cut = rng.randint(0, len(data))
        chunks = [data[:cut], data[cut:]]
    else:
        chunks = frames
    if rng.random() < 0.2:
        chunks.append(b"")  # the client closes
    sent = FrameReader(2**32 - 1)  # the frames the node has whole, as it reads them
    for chunk in chunks:
        sent.feed(chunk)
        whole = _whole(sent)
        before = _snapshot(world.service)
        fed = conversation.receive(chunk)
        stats["frames"] += 1
        assert fed.failure is None, fed.failure
        if fed.replies:
            world.service.commit()
        replies = _replies(fed.replies)
        for reply in replies:
            if isinstance(reply, Goodbye):
                stats[f"goodbye {reply.code}"] = stats.get(f"goodbye {reply.code}", 0) + 1
                if os.environ.get("HOTSWAP_FUZZ_VERBOSE"):
                    print(reply.message[:90])
        stats["errors"] += sum(isinstance(r, Error) for r in replies)
        after = _snapshot(world.service)
        if after != before:
            stats["changes"] += 1
            _allowed(conversation.principal, whole, conversation.conn.version or 1)
        if fed.close or conversation.over:
            return


def _replies(frames: list[bytes]) -> list[object]:
    """The node's frames, each one of our own messages (decoding checks every field)."""
    reader = FrameReader(2**32 - 1)
    reader.feed(b"".join(frames))
    out: list[object] = []
    while (payload := reader.next_frame()) is not None:
        message = decode_message(payload, from_client=False, version=3)
        if isinstance(message, Goodbye):
            assert message.code in GOODBYE_CODES
        out.append(message)
    assert reader.buffered == 0
    return out


def _snapshot(service: Service) -> dict[str, tuple[object, ...]]:
    """What requests without the role they need must not change."""
    return {
        name: (m.identity, m.generation, m.inputs, m.state, m.keyed.total)
        for name, m in service.registry.machines.items()
    }


def _whole(reader: FrameReader) -> list[bytes]:
    """The frames ``reader`` holds whole now (none after one the node would refuse)."""
    out: list[bytes] = []
    while True:
        try:
            payload = reader.next_frame()
        except RemoteProtocolError:
            return out
        if payload is None:
            return out
        out.append(payload)


def _allowed(principal: Principal | None, payloads: list[bytes], version: int) -> None:
    """Something changed: the frames the node read held a request that may change it, by a
    principal with the role it needs."""
    assert principal is not None, "a change on a connection that did not authenticate"
    requests = []
    for payload in payloads:
        try:
            message = decode_message(payload, from_client=True, version=version)
        except RemoteProtocolError:
            continue
        if isinstance(message, CHANGING):
            requests.append(message)
    assert any(principal.may(ROLE_OF[type(r)]) for r in requests), (principal, requests)


# --- what a fuzzing client sends ---------------------------------------------------------


def _hello(rng: random.Random, version: int, token: str | None) -> bytes:
    max_frame = rng.choice([4096, 1 << 20, 64 << 20, 2**32 - 1] * 8 + [100])
    hello = Hello(version, max_frame, "fuzz", token if version == 3 else None)
    try:
        payload = encode_message(hello, version if version in (1, 2, 3) else 3)
    except LocalProtocolError:  # a field out of bounds: sent anyway, as the protocol lays it out
        payload = _raw("hello", hello)
    return _mutated(rng, payload, 0.03)


def _frame(world: World, rng: random.Random, version: int) -> bytes:
    """A request (valid or not, encodable or not), a mutated one, or garbage."""
    roll = rng.random()
    if roll < 0.02:
        return frame(os.urandom(rng.randint(1, 40)))
    if roll < 0.03:
        return rng.choice([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"GET / HTTP/1.1\r\n\r\n"])
    if roll < 0.04:
        return _hello(rng, 3, rng.choice([*world.tokens.values(), None]))  # a second hello
    request = _request(world, rng)
    try:
        payload = encode_message(request, version)
    except LocalProtocolError:  # a field out of bounds: sent anyway, as the protocol lays it out
        payload = _raw(SCHEMA_OF[type(request)].name, request)
    return _mutated(rng, payload, 0.04)


def _mutated(rng: random.Random, payload: bytes, chance: float) -> bytes:
    if rng.random() >= chance:
        return frame(payload)
    data = bytearray(payload)
    for _ in range(rng.randint(1, 3)):
        at = rng.randint(0, len(data))
        match rng.choice(["set", "insert", "delete", "truncate"]):
            case "set" if at < len(data):
                data[at] = rng.randrange(256)
            case "insert":
                data[at:at] = os.urandom(rng.randint(1, 3))
            case "delete":
                del data[at : at + rng.randint(1, 3)]
            case _:
                del data[at:]
    return frame(bytes(data)) if data else b"\x00\x00\x00\x00"


def _raw(name: str, event: object) -> bytes:
    """``event`` as a CBOR map with its keys in canonical order, whatever its fields hold."""
    return cbor2.dumps(_canonical({"type": name, **_fields(event)}))


def _canonical(item: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(item.items(), key=lambda kv: (len(kv[0]), kv[0])))


def _fields(event: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(event):  # type: ignore[arg-type]
        value = getattr(event, f.name)
        if isinstance(value, tuple):
            value = [_canonical(_fields(v)) for v in value]
        if value is not None:
            out[f.name] = value
    return out


def _request(world: World, rng: random.Random) -> Request:
    machines = world.service.registry.machines
    running = [m.identity for m in machines.values()]
    choice: Callable[[list[Any]], Any] = rng.choice

    def pick(good: list[Any], bad: tuple[Any, ...] | list[Any] = ()) -> Any:
        """Mostly a well-formed value, sometimes one the protocol refuses."""
        return choice(list(bad)) if bad and rng.random() < 0.04 else choice(good)

    rid = pick([0, 1, 2, 3, rng.randrange(2**64)], [2**64, -1])
    name = pick(["counter", "counter", "tally", "nope"], ["", "x" * 70, "bad name"])
    identity = pick([*running, *running, "0" * 64, os.urandom(32).hex()], ["xyz"])
    module, migration = pick([*world.modules, b"", os.urandom(30)]), pick(world.modules)
    key = pick([None, None, "k1", "k2"], ["", "\0", "x" * 300])
    data = pick(world.inputs)
    generation = pick([None, None, 0, 1, 2, 7])
    signature = pick([b"", b"", b"", os.urandom(64)], [b"x"])
    kind = pick(
        [
            Send, Send, SendChecked, UpgradeRequest, UpgradeRequest, Release, Status, Status,
            Machines, GetModule, DryRun, Confirm, Revert, InstancesRequest, Delete, Deploy,
        ]
    )  # fmt: skip
    if kind is Send:
        return Send(rid, name, data, pick([True, False]), key)
    if kind is SendChecked:
        return SendChecked(rid, name, identity, data, pick([True, False]), key)
    if kind is UpgradeRequest:
        return UpgradeRequest(
            rid,
            name,
            identity,
            module,
            migration,
            generation,
            pick([False, False, True]),
            pick([0, 0, 1, 3]),
            pick([0, 0, 1]),
            pick([False, False, True]),
            signature,
        )
    if kind is Release:
        items = (ReleaseItem(name, identity, module, migration),) * pick([1, 1, 1, 0, 2])
        return Release(rid, items, signature)
    if kind is Status:
        return Status(rid, name, key)
    if kind is Machines:
        return Machines(rid)
    if kind is GetModule:
        return GetModule(rid, identity)
    if kind is DryRun:
        return DryRun(rid, name, identity, module, migration, pick([0, 1, 10]), False, generation)
    if kind is Confirm:
        return Confirm(rid, name)
    if kind is Revert:
        return Revert(rid, name)
    if kind is InstancesRequest:
        return InstancesRequest(rid, name, pick([1, 10, 1000], [0, 2000]), key, pick([None, "k1"]))
    if kind is Delete:
        return Delete(rid, name, pick(["k1", "k2", "zz"], [""]))
    return Deploy(rid, pick(["fresh", "counter", "tally"], [""]), module, signature)


def test_the_fuzz_can_tell_our_messages_from_others() -> None:
    """The checks themselves: a reply that is not a message of ours fails them."""
    with pytest.raises(RemoteProtocolError):
        _replies([frame(cbor2.dumps({"type": "welcome"}))])
    assert isinstance(_replies([frame(encode_message(Welcome()))])[0], Welcome)
    with pytest.raises(AssertionError, match="did not authenticate"):
        _allowed(None, [], 3)
    principal = Principal("p", frozenset({"read"}))
    with pytest.raises(AssertionError):
        _allowed(principal, [encode_message(Send(1, "counter", b"\x00"))], 3)
