"""The ``hotswap node`` command: parse its options and run a node until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from hotswap.address import default_address, parse_address
from hotswap.cam.limits import DEFAULT_FUEL
from hotswap.errors import HotswapError
from hotswap.node.instances import DEFAULT_CACHE, DEFAULT_SWEEP_RATE
from hotswap.node.main import NodeOptions, run
from hotswap.node.registry import DEFAULT_MAX_INPUT, MAX_FUEL
from hotswap.node.server import SPIN
from hotswap.node.service import NodeConfig
from hotswap.node.store import DEFAULT_RETAIN, SNAPSHOT_EVERY
from hotswap.node.trace import Trace
from hotswap.signing import TrustedKeys


def fuel_option(text: str) -> int:
    """``--fuel N``: a positive whole number (``10_000_000`` and ``10000000`` alike)."""
    try:
        fuel = int(text)
    except ValueError:
        fuel = 0
    if not 1 <= fuel <= MAX_FUEL:
        raise argparse.ArgumentTypeError(
            f"expected the fuel budget of each step as a whole number from 1 to {MAX_FUEL}, "
            f"got {text!r} (the default is {DEFAULT_FUEL:_})"
        )
    return fuel


def count_option(what: str, low: int, high: int = 2**31) -> Callable[[str], int]:
    """A whole-number option from ``low`` to ``high`` (``--cache``, ``--sweep-rate``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected {what} as a whole number from {low} to {high}, got {text!r}"
            )
        return value

    return parse


def retain_option(text: str) -> int | None:
    """``--retain N``: a whole number of log entries, or ``all`` (None: no compaction)."""
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 2**62:
        raise argparse.ArgumentTypeError(
            f"expected the log entries to keep as a whole number from 0 to {2**62}, or all, "
            f"got {text!r}"
        )
    return value


def _node(args: argparse.Namespace) -> int:
    host, port = parse_address(args.listen)
    machines: list[tuple[str, object]] = []
    for spec in args.machine:
        name, sep, ref = spec.partition("=")
        if not sep or not name or not ref:
            raise HotswapError(f"bad --machine {spec!r}: expected NAME=module:attribute")
        machines.append((name, ref))
    options = NodeOptions(
        host=host,
        port=port,
        data=Path(args.data),
        machines=tuple(machines),
        fsync=args.fsync,
        snapshot_every=args.snapshot_every,
        fuel=args.fuel,
        auth=args.auth,
        retain=args.retain,
        accept_loss=args.accept_loss,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        tls_ca=Path(args.tls_ca) if args.tls_ca else None,
        insecure=args.insecure,
        config=NodeConfig(
            name=args.name,
            idle_timeout=args.idle_timeout or None,
            spin=args.spin / 1e6,
            max_connections=args.max_connections,
            max_buffered=args.max_buffered,
            handshake_timeout=args.handshake_timeout,
            cache=args.cache,
            sweep_rate=args.sweep_rate,
            max_input=args.max_input,
            trust=TrustedKeys.from_files([Path(p) for p in args.trust]) if args.trust else None,
        ),
    )
    run(options, Trace(args.trace, background=True), args.loop)
    return 0


def add_node_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = sub.add_parser("node", help="run a node that hosts machines")
    node.add_argument("--listen", default=default_address(), help="HOST:PORT (%(default)s)")
    node.add_argument("--data", default="hotswap-data", help="store directory (%(default)s)")
    node.add_argument(
        "--machine",
        action="append",
        default=[],
        metavar="NAME=module:attribute",
        help="a machine to start when the store does not have it yet (repeatable)",
    )
    node.add_argument("--trace", choices=["seed", "names", "off"], default="seed")
    node.add_argument("--fsync", action="store_true", help="fsync every commit (power-loss safe)")
    node.add_argument(
        "--fuel",
        type=fuel_option,
        default=DEFAULT_FUEL,
        metavar="N",
        help="fuel budget of each step, init and migration: more traps out_of_fuel (%(default)s)",
    )
    node.add_argument(
        "--snapshot-every",
        type=int,
        default=SNAPSHOT_EVERY,
        metavar="N",
        help="snapshot each machine every N inputs, more rarely for a large state (%(default)s)",
    )
    node.add_argument(
        "--retain",
        type=retain_option,
        default=DEFAULT_RETAIN,
        metavar="N|all",
        help="keep at least the last N log entries; older inputs that recovery no longer needs "
        "are deleted in small batches; all: keep the whole log (%(default)s)",
    )
    node.add_argument(
        "--accept-loss",
        action="store_true",
        help="start even if the store is behind its position file (it lost committed work, "
        "as when its -wal file was removed after a crash): on what it holds, noting the loss",
    )
    node.add_argument(
        "--cache",
        type=count_option("the number of keyed instances kept in memory", 1),
        default=DEFAULT_CACHE,
        metavar="N",
        help="keyed instances kept live in memory, the rest on disk (%(default)s)",
    )
    node.add_argument(
        "--sweep-rate",
        type=count_option("the instances migrated a second by the sweeper", 0),
        default=DEFAULT_SWEEP_RATE,
        metavar="N",
        help="instances a second migrated to the running code in the background; 0: off "
        "(%(default)s)",
    )
    node.add_argument(
        "--max-input",
        type=count_option("the most bytes of one input", 1),
        default=DEFAULT_MAX_INPUT,
        metavar="BYTES",
        help="refuse inputs longer than this, before decoding them (%(default)s)",
    )
    node.add_argument(
        "--auth",
        action="store_true",
        help="clients must present a token (made by `hotswap token add`; on the first start an "
        "admin token for this machine's clients is written to DATA/client.token)",
    )
    node.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="KEYFILE",
        help="accept upgrades, releases, rollbacks and deploys only signed by a key in KEYFILE "
        "(public keys from `hotswap keygen`, one a line; repeatable)",
    )
    node.add_argument(
        "--tls-cert", default=None, metavar="FILE", help="serve over TLS: the node's certificate"
    )
    node.add_argument("--tls-key", default=None, metavar="FILE", help="its private key")
    node.add_argument(
        "--tls-ca",
        default=None,
        metavar="FILE",
        help="require client certificates signed by this authority (mutual TLS; with --auth, "
        "a certificate's common name names its principal)",
    )
    node.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening beyond this machine without TLS and authentication (logged "
        "as a warning; for trusted networks only)",
    )
    node.add_argument(
        "--spin",
        # at most 0.1 s: the loop does nothing else meanwhile (no timer, no new connection)
        type=count_option("the microseconds to poll a lone connection", 0, 100_000),
        default=round(SPIN * 1e6),
        metavar="MICROSECONDS",
        help="after answering its only connection, poll it this long for the next request "
        "before sleeping: lower latency for a lone client, for that much CPU a request; "
        "0: never (%(default)s)",
    )
    node.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="close connections that send nothing for this long; 0: never (%(default)s)",
    )
    node.add_argument(
        "--max-buffered",
        type=count_option("the most bytes of unfinished frames held for all connections", 1),
        default=256 * 1024 * 1024,
        metavar="BYTES",
        help="bytes of unfinished frames held for all connections together: the connection "
        "that passes it is closed (%(default)s)",
    )
    node.add_argument(
        "--max-connections",
        type=count_option("the most connections served at once", 1),
        default=1024,
        metavar="N",
        help="refuse connections beyond N with goodbye overloaded (%(default)s)",
    )
    node.add_argument(
        "--handshake-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="disconnect clients that say no hello in time (%(default)s)",
    )
    node.add_argument("--name", default="hotswap-node", help="name announced to clients")
    node.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
    node.set_defaults(func=_node)
