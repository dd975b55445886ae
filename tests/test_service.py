"""The node's application without sockets (``service.py``): a Conversation turns received
bytes into the frames a node sends, through the Service, exactly as the server does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from hotswap.cam.loaded import LoadedModule, is_loaded, load, load_module
from hotswap.cam.module import encode_module
from hotswap.cam.values import decode_value, encode_value
from hotswap.dsl import machine
from hotswap.errors import StoreError
from hotswap.examples import handbuilt
from hotswap.lang.types import INT
from hotswap.node.memory import MemoryNode
from hotswap.node.service import Conversation, Service
from hotswap.protocol import ClientConnection, Hello
from hotswap.protocol.codec import encode_message
from hotswap.protocol.connection import ServerConnection
from hotswap.protocol.events import (
    NEED_DATA,
    Error,
    ErrorCode,
    GetModule,
    Goodbye,
    Machines,
    MachinesReply,
    ModuleReply,
    Output,
    Request,
    Send,
    SendChecked,
    Status,
    StatusReply,
    Upgraded,
    UpgradeRequest,
    Welcome,
)
from hotswap.protocol.framing import frame

INCR, COUNT = b"\x00", b"\x01"
V1: LoadedModule = load(handbuilt.counter_module())
V2: LoadedModule = load(handbuilt.counter2_module())
MIGRATE = encode_module(handbuilt.upgrade_state_module())


@pytest.fixture
def service() -> Iterator[Service]:
    with MemoryNode({"counter": handbuilt.counter_module}) as node:
        yield node.service


def _events(client: ClientConnection, frames: list[bytes]) -> list[object]:
    client.receive_data(b"".join(frames))
    out: list[object] = []
    while (event := client.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def _open(service: Service) -> tuple[Conversation, ClientConnection]:
    conversation, client = Conversation(service), ClientConnection()
    fed = conversation.receive(client.send(Hello()))
    assert fed.welcomed and not fed.close and fed.failure is None
    (welcome,) = _events(client, fed.replies)
    assert isinstance(welcome, Welcome) and welcome.node == "hotswap-node"
    return conversation, client


def test_a_pipeline_is_answered_in_order(service: Service) -> None:
    conversation, client = _open(service)
    requests: list[Request] = [
        Send(1, "counter", INCR),
        Send(2, "counter", COUNT),
        Machines(3),
        Status(4, "x"),
    ]
    fed = conversation.receive(b"".join(client.send(r) for r in requests))
    assert fed.requests == 4 and not fed.welcomed
    replies = _events(client, fed.replies)
    assert [type(r) for r in replies] == [Output, Output, MachinesReply, Error]
    sig = V1.machine
    assert sig is not None and isinstance(replies[1], Output)
    assert decode_value(replies[1].output, sig.output) == (1, 1)  # R (Int 1)
    assert isinstance(replies[3], Error) and replies[3].code == ErrorCode.UNKNOWN_MACHINE
    assert service.registry.get("counter").inputs == 2


def test_a_request_split_across_chunks_waits_for_its_last_byte(service: Service) -> None:
    conversation, client = _open(service)
    frame = client.send(Send(1, "counter", INCR))
    first = conversation.receive(frame[:3])
    assert first.replies == [] and first.requests == 0
    rest = conversation.receive(frame[3:])
    assert rest.requests == 1 and len(rest.replies) == 1


def test_an_upgrade_goes_through_the_registry_and_the_log(service: Service) -> None:
    conversation, client = _open(service)
    request = UpgradeRequest(1, "counter", V1.identity, V2.data, MIGRATE)
    (reply,) = _events(client, conversation.receive(client.send(request)).replies)
    assert reply == Upgraded(1, V1.identity, V2.identity, generation=1)
    assert service.store.module(V2.identity) == V2.data
    assert service.registry.get("counter").state == (0, 0)
    (again,) = _events(client, conversation.receive(client.send(request)).replies)
    assert isinstance(again, Error) and again.code == ErrorCode.WRONG_VERSION
    fed = conversation.receive(client.send(GetModule(2, V1.identity)))
    assert [type(e) for e in _events(client, fed.replies)] == [ModuleReply]


def test_garbage_gets_a_goodbye_and_ends_the_conversation(service: Service) -> None:
    conversation, client = _open(service)
    fed = conversation.receive(b"\x00\x00\x00\x03abc")
    assert fed.close and fed.failure is None
    (goodbye,) = _events(client, fed.replies)
    assert isinstance(goodbye, Goodbye)
    assert conversation.receive(b"more").replies == []  # nothing is read after a goodbye


def test_the_peer_closing_ends_the_conversation(service: Service) -> None:
    conversation, _ = _open(service)
    fed = conversation.receive(b"")
    assert fed.close and fed.replies == [] and fed.failure is None


def test_a_store_failure_while_logging_an_upgrade_is_a_failure_with_no_replies(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory is then ahead of the store: the shell must stop and acknowledge nothing."""
    conversation, client = _open(service)

    def full(*args: object) -> None:
        raise StoreError("logging an upgrade to the store failed: disk full")

    monkeypatch.setattr(service.store, "log_upgrade", full)
    request = UpgradeRequest(2, "counter", V1.identity, V2.data, MIGRATE)
    fed = conversation.receive(client.send(Send(1, "counter", INCR)) + client.send(request))
    assert isinstance(fed.failure, StoreError) and fed.replies == []


def test_a_status_reply_carries_the_state_and_history(service: Service) -> None:
    conversation, client = _open(service)
    _events(client, conversation.receive(client.send(Send(1, "counter", INCR))).replies)
    (reply,) = _events(client, conversation.receive(client.send(Status(2, "counter"))).replies)
    assert isinstance(reply, StatusReply)
    assert reply.inputs == 1 and [h.kind for h in reply.history] == ["start"]


def test_a_duplicate_id_among_unanswered_requests_ends_the_conversation(service: Service) -> None:
    """Two requests with one id in one batch: their replies would be indistinguishable, so
    the node answers the first, then says goodbye and applies nothing more."""
    conversation, client = _open(service)
    batch = [Send(5, "counter", INCR), Send(5, "counter", INCR), Send(6, "counter", INCR)]
    fed = conversation.receive(b"".join(client.send(r) for r in batch[:1]) + _raw_send(batch[1:]))
    assert fed.close and fed.requests == 1
    assert service.registry.get("counter").inputs == 1
    events: list[object] = []
    client.receive_data(b"".join(fed.replies))
    while (event := client.next_event()) is not NEED_DATA:
        events.append(event)
    assert isinstance(events[0], Output) and isinstance(events[1], Goodbye)
    assert "duplicate request id 5" in events[1].message


def _raw_send(requests: list[Send]) -> bytes:
    """Frames a well-behaved client connection would refuse to write (a duplicate id)."""
    return b"".join(frame(encode_message(r)) for r in requests)


def test_an_upgrade_with_unloaded_modules_is_held_while_others_are_served(
    service: Service,
) -> None:
    """With ``prepare``, the upgrade waits for its modules outside the conversation: the
    connection's later requests wait behind it, another connection's inputs go on."""
    fresh = (("t", b"held"),)
    v2 = encode_module(replace(handbuilt.counter2_module(), custom=fresh))
    mig = encode_module(replace(handbuilt.upgrade_state_module(), custom=fresh))
    conversation = Conversation(service, prepare=True)
    client = ClientConnection()
    client.receive_data(b"".join(conversation.receive(client.send(Hello())).replies))
    client.next_event()
    burst: list[Request] = [
        UpgradeRequest(1, "counter", V1.identity, v2, mig),
        Send(2, "counter", INCR),
    ]
    fed = conversation.receive(b"".join(client.send(r) for r in burst))
    assert fed.prepare == [v2, mig] and fed.replies == [] and conversation.holding
    other, other_client = _open(service)
    served = other.receive(other_client.send(Send(1, "counter", INCR)))
    assert len(served.replies) == 1 and service.registry.get("counter").inputs == 1  # on v1
    for data in fed.prepare:
        load_module(data)  # what the server does on a worker thread
    resumed = conversation.resume()
    assert [type(e) for e in _events(client, resumed.replies)] == [Upgraded, Output]
    assert service.registry.get("counter").state == (1, 1) and not conversation.holding


def test_an_upgrade_for_other_code_is_not_held(service: Service) -> None:
    v2 = encode_module(replace(handbuilt.counter2_module(), custom=(("t", b"other"),)))
    conversation, client = _open(service)
    conversation.prepare = True
    request = UpgradeRequest(1, "counter", "0" * 64, v2, MIGRATE)
    fed = conversation.receive(client.send(request))
    assert fed.prepare == [] and len(fed.replies) == 1  # refused at once, nothing loaded


def test_a_duplicate_of_a_held_requests_id_ends_the_conversation(service: Service) -> None:
    """The held upgrade's reply goes out with those after it: an id repeating it is ambiguous
    (it slipped past the check once the hold began a new set of unanswered ids)."""
    v2 = encode_module(replace(handbuilt.counter2_module(), custom=(("t", b"dup"),)))
    conversation = Conversation(service, prepare=True)
    client = ClientConnection()
    client.receive_data(b"".join(conversation.receive(client.send(Hello())).replies))
    client.next_event()
    upgrade = UpgradeRequest(5, "counter", V1.identity, v2, MIGRATE)
    fed = conversation.receive(client.send(upgrade) + _raw_send([Send(5, "counter", INCR)]))
    assert fed.prepare and conversation.holding
    for data in fed.prepare:
        load_module(data)
    resumed = conversation.resume()
    events = _events(client, resumed.replies)
    assert [type(e) for e in events] == [Upgraded, Goodbye] and resumed.close


def test_an_upgrade_the_registry_would_refuse_unloaded_is_not_held(service: Service) -> None:
    """A wrong generation is refused before loading, so nothing is loaded for it either."""
    v2 = encode_module(replace(handbuilt.counter2_module(), custom=(("t", b"gen"),)))
    conversation, client = _open(service)
    conversation.prepare = True
    request = UpgradeRequest(1, "counter", V1.identity, v2, MIGRATE, generation=7)
    fed = conversation.receive(client.send(request))
    assert fed.prepare == [] and not is_loaded(v2)
    (reply,) = _events(client, fed.replies)
    assert isinstance(reply, Error) and reply.code == ErrorCode.WRONG_VERSION


@machine(init=0)
def long_sm(n: int, count: int) -> tuple[int, str]:
    """An output of ``10 * n`` characters (more than a client with a 4 KiB frame takes)."""
    out = ""
    for _ in range(n):
        out = out + "0123456789"
    return count + 1, out


def _int(n: int) -> bytes:
    return encode_value(n, INT)


def _hot_path_requests() -> list[Request]:
    v1 = V1.identity
    long_v1 = long_sm.identity
    return [
        Send(1, "counter", INCR),
        Send(2, "counter", COUNT, state=False),
        SendChecked(3, "counter", v1, INCR),
        SendChecked(4, "counter", "0" * 64, INCR),  # wrong_version
        Send(5, "nope", INCR),  # unknown_machine
        Send(6, "counter", b"\x09"),  # bad_input
        Send(7, "counter", INCR, key="user-1"),
        SendChecked(8, "counter", v1, COUNT, False, key="user-1"),
        SendChecked(9, "counter", "0" * 64, COUNT, key="user-1"),
        Send(10, "long", _int(3)),
        Send(11, "long", _int(500), state=False),  # too_large for the client
        SendChecked(12, "long", long_v1, _int(1), key="k"),
        Send(2**40, "counter", INCR),
        Machines(13),
        Send(14, "counter", INCR),
    ]


def _answered(requests: list[Request]) -> tuple[list[object], list[tuple[object, ...]]]:
    """The replies to ``requests`` in one chunk from a client that takes frames of at most
    4 KiB, and the log they leave."""
    from hotswap.protocol.fastpath import encode_send, encode_send_checked  # noqa: PLC0415

    machines = {"counter": handbuilt.counter_module, "long": long_sm}
    with MemoryNode(machines) as node:
        conversation, client = Conversation(node.service), ClientConnection()
        _events(client, conversation.receive(client.send(Hello(max_frame=4096))).replies)
        for r in requests:  # each in the layout the hot path reads
            if isinstance(r, SendChecked):
                assert encode_send_checked(r) is not None
            elif isinstance(r, Send):
                assert encode_send(r) is not None
        fed = conversation.receive(b"".join(client.send(r) for r in requests))
        assert fed.failure is None and fed.requests == len(requests)
        node.service.commit()
        log = node.service.store.db.execute(
            "SELECT seq, machine, kind, identity, payload, key FROM log ORDER BY seq"
        ).fetchall()
        return _events(client, fed.replies), log


def test_the_hot_path_answers_inputs_as_the_long_way_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends and checked sends, keyed or not, applied or refused (wrong code, unknown machine,
    bad input, an output too large for the client), answer and log the same whether the
    connection reads them on its hot path (``next_input``) or as events."""
    requests = _hot_path_requests()
    hot = _answered(requests)
    monkeypatch.setattr(ServerConnection, "next_input", lambda self: None)
    assert _answered(requests) == hot
    replies, log = hot
    codes = [r.code if isinstance(r, Error) else type(r).__name__ for r in replies]
    assert codes == [
        "Output",
        "Output",
        "Output",
        "wrong_version",
        "unknown_machine",
        "bad_input",
        "Output",
        "Output",
        "wrong_version",
        "Output",
        "too_large",
        "Output",
        "Output",
        "MachinesReply",
        "Output",
    ]
    # every input applied is logged once, in order (the one whose output was too large too)
    assert [(machine, kind, payload, key) for _, machine, kind, _, payload, key in log] == [
        ("counter", "start", None, None),
        ("long", "start", None, None),
        ("counter", "input", INCR, None),
        ("counter", "input", COUNT, None),
        ("counter", "input", INCR, None),
        ("counter", "input", INCR, "user-1"),
        ("counter", "input", COUNT, "user-1"),
        ("long", "input", _int(3), None),
        ("long", "input", _int(500), None),
        ("long", "input", _int(1), "k"),
        ("counter", "input", INCR, None),
        ("counter", "input", INCR, None),
    ]
