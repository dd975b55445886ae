"""Starting a node: open the store, recover, start the configured machines, serve."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path

from hotswap.address import DEFAULT_PORT, check_machine_name, format_address
from hotswap.auth import LOCAL_TOKEN, Credentials
from hotswap.cam.limits import DEFAULT_FUEL
from hotswap.code import import_object, module_bytes
from hotswap.errors import HotswapError, NodeError
from hotswap.node.compiling import keep_the_loop_free
from hotswap.node.registry import Registry, check_fuel, load_machine_code
from hotswap.node.server import Node
from hotswap.node.service import NodeConfig, Service
from hotswap.node.store import DEFAULT_RETAIN, SCHEMA_VERSION, SNAPSHOT_EVERY, Store
from hotswap.node.trace import Trace
from hotswap.protocol.fields import SHORT_TEXT, InvalidField
from hotswap.tls import server_context


@dataclass(frozen=True, slots=True)
class NodeOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data: Path = Path("hotswap-data")
    #: (name, code): code as ``"module:attribute"`` or any form :func:`module_bytes` takes.
    machines: tuple[tuple[str, object], ...] = ()
    fsync: bool = False
    snapshot_every: int = SNAPSHOT_EVERY
    config: NodeConfig = field(default_factory=NodeConfig)
    #: The fuel budget of every step, init and migration (``--fuel``).
    fuel: int = DEFAULT_FUEL
    #: Authenticate clients (``--auth``) by the data directory's credentials file, made on the
    #: first start with one admin token for this machine's clients (``client.token``).
    auth: bool = False
    #: The log keeps at least its last this many entries (``--retain``; None: all of them).
    retain: int | None = DEFAULT_RETAIN
    #: Start on a store found behind its position file, noting the loss (``--accept-loss``).
    accept_loss: bool = False
    #: TLS (``--tls-cert``, ``--tls-key``); with ``tls_ca``, clients must present a
    #: certificate that authority signed (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    #: Listen on a non-loopback address without TLS and authentication (``--insecure``).
    insecure: bool = False


def tls_context(options: NodeOptions) -> ssl.SSLContext | None:
    """The node's TLS context, or None; a file that does not load is named."""
    if options.tls_cert is None and options.tls_key is None:
        if options.tls_ca is not None:
            raise HotswapError(
                "--tls-ca needs --tls-cert and --tls-key: the node's own certificate"
            )
        return None
    if options.tls_cert is None or options.tls_key is None:
        raise HotswapError("TLS needs both --tls-cert FILE and --tls-key FILE")
    return server_context(options.tls_cert, options.tls_key, options.tls_ca)


def loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host in ("", "*"):
        return False
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False  # listen() reports it
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_exposure(options: NodeOptions, trace: Trace, bound: str | None = None) -> None:
    """Refuse to listen beyond this machine unless clients must use TLS and authenticate
    (``--auth``, or client certificates with ``--tls-ca``), or ``--insecure`` says to.
    ``bound``: the address the socket is bound to (else the host asked for): what it was
    bound to, not what a name resolved to another time, decides."""
    if loopback(options.host if bound is None else bound):
        return
    protected = options.tls_cert is not None and (options.auth or options.tls_ca is not None)
    if protected:
        return
    missing = []
    if options.tls_cert is None:
        missing.append("TLS (--tls-cert FILE --tls-key FILE)")
    if not options.auth and options.tls_ca is None:
        missing.append("authentication (--auth, or client certificates with --tls-ca FILE)")
    where = format_address(options.host, options.port)
    if not options.insecure:
        raise HotswapError(
            f"refusing to listen on {where}, beyond this machine, without "
            f"{' and '.join(missing)}: anyone who reaches the port could read every state, "
            "send inputs and replace code (docs/security.md). Give them, or --insecure to "
            "accept that"
        )
    trace.note(
        f"WARNING: --insecure: listening on {where} without {' and '.join(missing)}; anyone "
        "who reaches this port can read every state, send inputs and replace any code"
    )


def open_service(options: NodeOptions, trace: Trace) -> Service:
    """Open the store, recover, start configured machines the store does not have yet."""
    for name, _ in options.machines:
        check_machine_name(name)
    check_fuel(options.fuel)
    try:
        SHORT_TEXT.encode(options.config.name)
    except InvalidField:
        raise HotswapError(
            f"bad node name: at most 256 characters, got {len(options.config.name)}"
        ) from None
    options.data.mkdir(parents=True, exist_ok=True)
    # the store first: a second node on this directory stops here, having written nothing
    store = Store(
        options.data / "node.sqlite3",
        fsync=options.fsync,
        snapshot_every=options.snapshot_every,
        retain=options.retain,
        accept_loss=options.accept_loss,
    )
    try:
        if options.auth:
            options = replace(
                options,
                config=replace(options.config, credentials=_credentials(options.data, trace)),
            )
            known = options.config.credentials
            assert known is not None
            certified = [p.name for p in known.principals if known.by_certificate(p.name)]
            if certified and options.tls_ca is None:
                trace.note(
                    f"Note: {', '.join(certified)} authenticate(s) by client certificate, "
                    "which this node does not ask for: start it with --tls-ca FILE (and "
                    "--tls-cert, --tls-key) for them to connect"
                )
        if store.upgraded is not None:
            schema, seconds = store.upgraded
            trace.note(
                f"Upgraded the store from schema {schema} to {SCHEMA_VERSION} in place "
                f"({seconds:.1f} s); a node of an older release cannot open it any more"
            )
        if store.log_damage is not None:
            trace.note(
                f"Accepted loss (--accept-loss): the input log was damaged ({store.log_damage}); "
                f"the entries before the damage were kept, and the file as it was is at "
                f"{store.log_set_aside}"
            )
        if store.log_dropped:
            trace.note(
                f"Note: the input log ended in {store.log_dropped:,} bytes that are not a whole "
                "entry (a write cut short: never acknowledged); dropped"
            )
        if store.lost is not None:
            held, recorded = store.lost
            said = (
                "its position file was unreadable"
                if recorded is None
                else f"entry {recorded:,} was recorded as committed"
            )
            trace.note(
                f"Accepted loss (--accept-loss): the store ends at log entry {held:,}; "
                f"{said}; starting on what the store holds"
            )
        return _start(options, trace, store)
    except BaseException:
        store.close()  # release the store's lock: the caller may fix the problem and retry
        raise


def _credentials(data: Path, trace: Trace) -> Credentials:
    """The principals of ``data/credentials.json``; on the first start, one: ``local``, an
    admin, whose token is written to ``data/client.token`` (mode 0600), where clients on this
    machine find it."""
    path = data / "credentials.json"
    os.chmod(data, 0o700)  # the store holds every state and input: its owner's alone
    first = not path.exists()
    credentials = Credentials.load(path)
    if first:  # only then: a file whose last principal was revoked stays empty
        token = credentials.add("local", ["admin"])
        credentials.save(path)
        local = data / LOCAL_TOKEN
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token + "\n")
        trace.note(
            f"Authentication on: made the admin token of 'local' in {local} (clients on this "
            "machine use it); `hotswap token add NAME --roles ROLES` makes others"
        )
        credentials = Credentials.load(path)  # as saved: later changes to the file are seen
    names = ", ".join(f"{p.name} ({'/'.join(sorted(p.roles))})" for p in credentials.principals)
    trace.note(
        f"Clients authenticate: {len(credentials)} principal(s) known, {names}; changes to "
        f"{path} take effect within a second"
    )
    return credentials


def _start(options: NodeOptions, trace: Trace, store: Store) -> Service:
    registry = Registry(options.fuel, options.config.max_input)
    recovery = store.recover(options.fuel)
    for machine in recovery.machines:
        registry.restore(machine)
        trace.note(
            f"Recovered machine {machine.name!r} on {machine.identity[:12]} "
            f"after {machine.inputs} inputs, {len(machine.history) - 1} upgrade(s)"
        )
    if recovery.machines:
        trace.note(
            f"Recovery replayed {recovery.replayed} log entries in {recovery.seconds * 1000:.0f} ms"
        )
    for name, spec in options.machines:
        where = spec if isinstance(spec, str) else f"the machine {name!r}"
        given = import_object(spec) if isinstance(spec, str) else spec
        code = load_machine_code(module_bytes(given, where))
        running = registry.machines.get(name)
        if running is not None:
            if running.identity != code.identity:
                trace.note(
                    f"Note: {name!r} keeps running {running.identity[:12]}; --machine "
                    f"{name}={where} ({code.identity[:12]}) only starts a machine the store lacks: "
                    "use `hotswap upgrade` to change its code"
                )
            continue
        machine = registry.start(name, code)
        store.log_start(machine)
        trace.note(f"Started machine {name!r} on {code.identity[:12]}")
    store.commit(registry.machines)
    store.discard()  # parts the first commit's collection found unreferenced (a crash's)
    if not registry.machines:
        raise NodeError("bad_request", "no machines: give --machine NAME=module:attribute")
    trust = options.config.trust
    if trust is not None:
        trace.note(
            f"Changes of code must be signed by one of {len(trust)} trusted key(s): "
            + ", ".join(trust.ids)
        )
    return Service(registry, store, trace, options.config)


def listen(host: str, port: int) -> socket.socket:
    """The node's listening socket, bound before anything else happens: a node whose address
    is taken stops here, before it starts a machine or writes to its store."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise HotswapError(f"cannot listen on {format_address(host, port)}: {e}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as e:
        sock.close()
        hint = " (is another node running? give --listen HOST:PORT)"
        if e.errno != errno.EADDRINUSE:
            hint = ""
        raise HotswapError(
            f"cannot listen on {format_address(host, port)}: {e.strerror or e}{hint}"
        ) from None
    sock.setblocking(False)
    return sock


def run(options: NodeOptions, trace: Trace, loop: str = "auto") -> None:
    """Serve until SIGINT/SIGTERM. ``loop``: ``uvloop``, ``asyncio`` or ``auto`` (uvloop if
    installed)."""
    try:
        context = tls_context(options)  # a certificate that does not load stops us here
        sock = listen(options.host, options.port)
        try:
            check_exposure(options, trace, sock.getsockname()[0])  # before the store opens
            node = Node(open_service(options, trace), context)
        except BaseException:
            sock.close()
            raise
        try:
            _serve(node, sock, loop)
        finally:
            sock.close()
            node.service.store.close()
    finally:
        trace.close()  # what the trace still holds is written before the process ends


def _serve(node: Node, sock: socket.socket, loop: str) -> None:
    keep_the_loop_free()  # an upgrade's modules load on a worker thread meanwhile
    # auto: uvloop, but asyncio's loop over TLS: uvloop's TLS transport decrypts a large frame
    # in one piece (a 32 MiB upgrade held its loop about 100 ms; asyncio's, 10 ms)
    if loop == "uvloop" or (loop == "auto" and node.tls is None):
        try:
            import uvloop  # noqa: PLC0415 - optional: the node runs on plain asyncio too
        except ImportError:
            if loop == "uvloop":
                raise HotswapError("--loop uvloop: uvloop is not installed") from None
        else:
            uvloop.run(node.serve(sock=sock))
            return
    asyncio.run(node.serve(sock=sock))
