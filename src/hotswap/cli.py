"""The `hotswap` commands that talk to a node (send, upgrade, status, ...) or inspect modules.

The ``node`` command lives with the node (``hotswap.node.cli``); ``hotswap.__main__`` puts the
two together as the ``hotswap`` program. Every failure is one line on stderr,
``hotswap: <what went wrong>``, and exit status 1.

"Upgrade" here is the user's :class:`hotswap.code.Upgrade`, built from ``--to`` and
``--migration`` and sent by the client.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from hotswap.address import DEFAULT_ADDRESS
from hotswap.auth import ROLES as AUTH_ROLES
from hotswap.auth import Credentials
from hotswap.cam.disasm import disassemble
from hotswap.cam.loaded import LoadedModule, load_module
from hotswap.cam.values import decode_type, decode_value, encode_value
from hotswap.changes import capture, read_change, write_change
from hotswap.client import Client, DryRunOutcome, Upgrade, connect, schemas_of
from hotswap.client.session import DRY_RUN_INPUTS, Flow, expect
from hotswap.code import import_object, module_bytes
from hotswap.errors import HotswapError, ValueTypeError
from hotswap.fleet import Fleet
from hotswap.lang.evaluate import Value
from hotswap.lang.types import Type
from hotswap.lang.values import parse, render
from hotswap.names.clip import clip, shorten
from hotswap.names.display import parse as parse_named
from hotswap.names.display import render as render_named
from hotswap.names.lint import nominal_notes
from hotswap.names.pysource import python_source
from hotswap.names.schema import Schema, describe
from hotswap.names.section import module_schemas
from hotswap.protocol.events import (
    MAX_PAGE,
    Deploy,
    Deployed,
    Release,
    Released,
    StatusReply,
    Upgraded,
    UpgradeRequest,
)
from hotswap.signing import (
    generate_key,
    key_id,
    public_line,
    read_private_key,
    write_private_key,
)
from hotswap.tls import default_client_context, write_authority

#: Characters of a value ``send`` and ``status`` print (``--full``: all of it).
SHOWN = 2000


def _shown(
    value: Value, t: Type, full: bool, named: Schema | None = None, role: str = "state"
) -> str:
    """``value`` in the seed's syntax (by its Python names with ``named``): whole with
    ``full``, else its first :data:`SHOWN` characters and what was left out, as the node's
    trace cuts a value (the cost is that of the part shown, whatever the value's size)."""
    if full:
        return render(value, t) if named is None else render_named(value, named)
    clipped, cut = clip(value, t, SHOWN)
    text = render(clipped, t) if named is None else render_named(clipped, named)
    if not cut and len(text) <= SHOWN:
        return text
    return f"{shorten(text, cut, SHOWN)} (--full shows the whole {role})"


def _running(client: Client, machine: str) -> str:
    """The identity of the code ``machine`` runs, without its state (``status`` would send
    that too: megabytes for a large one)."""
    for name, identity in client.machines():
        if name == machine:
            return identity
    return client.status_raw(machine).identity  # not there: the node's error names it


def _send(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        code = client.code(_running(client, args.machine))
        sig = code.machine
        assert sig is not None
        value = _parse_input(args.value, code)
        data = encode_value(value, sig.input)
        reply = client.send_raw(args.machine, data, code.identity, key=args.key)
        output = decode_value(reply.output, sig.output)
        state = decode_value(reply.state, sig.state)
        schemas = schemas_of(code) if args.names else None
        out_names = None if schemas is None else schemas["output"]
        state_names = None if schemas is None else schemas["state"]
        print(f"Output:    {_shown(output, sig.output, args.full, out_names, 'output')}")
        print(f"New state: {_shown(state, sig.state, args.full, state_names)}")
    return 0


def _parse_input(text: str, code: LoadedModule) -> Value:
    """An input in the seed's syntax (``L Unit``) or, if the module has names, by Python name
    (``Incr()``)."""
    sig = code.machine
    assert sig is not None
    try:
        return parse(text, sig.input)
    except ValueTypeError as seed_error:
        schemas = schemas_of(code)
        if schemas is None:
            raise
        try:
            return parse_named(text, schemas["input"])
        except ValueTypeError as name_error:
            first, second = (
                (seed_error, name_error) if _looks_seed(text) else (name_error, seed_error)
            )
            how = ("a seed-syntax value", "a Python value")
            if first is name_error:
                how = how[::-1]
            msg = f"{text!r} as {how[0]}: {first} (as {how[1]}: {second})"
            raise ValueTypeError(msg) from None


_SEED_WORDS = ("Unit", "Int", "Pair", "L", "R", "Str", "List", "Map", "(")


def _looks_seed(text: str) -> bool:
    """Whether ``text`` starts as the seed's syntax does (``Int 1``, ``L Unit``), so that its
    error is the one to show first."""
    first = text.strip().split(" ", 1)[0]
    return first in _SEED_WORDS


def _upgrade(args: argparse.Namespace) -> int:
    for flag, given in (("--trial", args.trial), ("--trial-seconds", args.trial_seconds)):
        if given is not None and given < 1:  # 0 would make the upgrade permanent, silently
            raise HotswapError(
                f"{flag} {given}: --trial and --trial-seconds count inputs and seconds: give "
                "N >= 1 (or leave the option out for a permanent upgrade)"
            )
    args.trial, args.trial_seconds = args.trial or 0, args.trial_seconds or 0
    if args.inputs is not None and not args.dry_run:
        raise HotswapError("--inputs says how many inputs a --dry-run replays: add --dry-run")
    if args.inputs is not None and args.inputs < 1:
        raise HotswapError(f"--inputs must be at least 1, not {args.inputs}")
    if args.generation is not None and args.generation < 0:
        raise HotswapError(f"--generation must be 0 or more, not {args.generation}")
    trial = bool(args.trial or args.trial_seconds)
    if args.dry_run and trial:
        raise HotswapError("--dry-run changes nothing; --trial makes an upgrade: choose one")
    target = import_object(args.to)
    new = module_bytes(target, args.to)
    migration = None
    if args.migration:
        migration = import_object(args.migration)
        module_bytes(migration, args.migration)  # a bad reference fails here, named
    with _connect(args) as client:
        _sign(client, args)
        status = client.status_raw(args.machine)
        expected = args.expect or status.identity
        generation = args.generation if args.generation is not None else status.generation
        running = status.identity
        if (
            migration is None
            and not (trial or args.dry_run or args.out)
            and expected == running
            and load_module(new).identity == running
        ):
            # an upgrade to the code that runs, with the state as it is, would only add a
            # generation (and make change files prepared for this one stale): said, not made
            print(
                f"{args.machine} already runs {running[:12]}: nothing changed (give "
                "--migration to run a migration on its state with the same code)"
            )
            return 0
        change = Upgrade(expected, target, migration, generation=generation, rename=args.rename)
        if args.out:
            if args.dry_run:
                raise HotswapError("--dry-run changes nothing; --out writes a change: choose one")
            flow = client.session.upgrade(
                args.machine,
                change,
                trial=args.trial,
                trial_seconds=args.trial_seconds,
                check_all=args.check_all,
            )
            return _write_out(client, args, flow)
        if args.dry_run:
            inputs = DRY_RUN_INPUTS if args.inputs is None else args.inputs
            _report_dry_run(args.machine, client.dry_run(args.machine, change, inputs=inputs))
            return 0
        reply = client.upgrade(
            args.machine,
            change,
            trial=args.trial,
            trial_seconds=args.trial_seconds,
            check_all=args.check_all,
        )
        notes = reply.notes or nominal_notes(client.code(reply.old), load_module(new))
    bounds = [f"{args.trial} input(s)"] * bool(args.trial)
    bounds += [f"{args.trial_seconds} s"] * bool(args.trial_seconds)
    _report(args.machine, reply, notes, derived=migration is None, trial=" or ".join(bounds))
    return 0


def _report_dry_run(machine: str, outcome: DryRunOutcome) -> None:
    print(
        f"Dry run of {machine}: {outcome.replayed} recent input(s) replayed on the new code, "
        f"{outcome.differing} output(s) differ, {outcome.traps} trap(s); nothing changed"
    )
    for note in outcome.notes:
        print(f"Note: {note}")
    for d in outcome.differences:
        new = f"trap: {d.trap}" if d.new is None else d.new
        print(f"  input {d.seq}: {d.input}")
        print(f"    running code: {d.old}")
        print(f"    new code:     {new}")
    if outcome.differing > len(outcome.differences):
        print(f"  ... and {outcome.differing - len(outcome.differences)} more")


def _end_trial(args: argparse.Namespace) -> int:
    revert = args.command == "revert"
    with _connect(args) as client:
        ended = client.revert(args.machine) if revert else client.confirm(args.machine)
    if revert:
        print(
            f"Trial of {args.machine} reverted: back on {ended.identity[:12]} (generation "
            f"{ended.generation}), {ended.replayed} input(s) replayed on it, "
            f"{ended.skipped} skipped because they trap there; outputs already sent stay sent"
        )
    else:
        print(
            f"Trial of {args.machine} confirmed: {ended.identity[:12]} is permanent "
            f"(generation {ended.generation})"
        )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    migration = None
    if args.migration:
        migration = module_bytes(import_object(args.migration), args.migration)
    with _connect(args) as client:
        _sign(client, args)
        if args.out:
            flow = client.session.rollback(args.machine, migration, check_all=args.check_all)
            return _write_out(client, args, flow)
        reply = client.rollback(args.machine, migration, check_all=args.check_all)
    _report(args.machine, reply, (), derived=migration is None)
    return 0


def _release(args: argparse.Namespace) -> int:
    targets = _pairs(args.machines, "machine")
    migrations = _pairs(args.migration, "--migration")
    unknown = sorted(set(migrations) - set(targets))
    if unknown:
        raise HotswapError(f"--migration for {', '.join(unknown)}, which the release lacks")
    with _connect(args) as client:
        _sign(client, args)
        upgrades = {}
        for name, ref in targets.items():
            migration = None
            if name in migrations:
                migration = module_bytes(import_object(migrations[name]), migrations[name])
            running = client.status_raw(name).identity
            upgrades[name] = Upgrade(running, import_object(ref), migration)
        if args.out:
            return _write_out(client, args, client.session.release(upgrades))
        reply = client.release(upgrades)
    print(f"Release successful! {len(reply.machines)} machines swapped together:")
    for entry in reply.machines:
        print(f"  {entry.machine}: {entry.old[:12]} -> {entry.new[:12]}")
    return 0


def _fleet_upgrade(args: argparse.Namespace) -> int:
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
    target = import_object(args.to)
    migration = back = None
    if args.migration:
        migration = module_bytes(import_object(args.migration), args.migration)
    if args.back:
        back = module_bytes(import_object(args.back), args.back)
    with Fleet(nodes) as fleet:
        expected = (
            args.expect or next(iter(fleet.clients.values())).status_raw(args.machine).identity
        )
        done = fleet.upgrade(args.machine, Upgrade(expected, target, migration), back)
    print(f"Upgrade successful on {len(done.nodes)} nodes: {done.old[:12]} -> {done.new[:12]}")
    return 0


def _pairs(specs: list[str], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for spec in specs:
        name, ref = _pair(spec, what)
        if name in pairs:
            raise HotswapError(f"{what} {name!r} is given twice")
        pairs[name] = ref
    return pairs


def _pair(spec: str, what: str) -> tuple[str, str]:
    name, sep, ref = spec.partition("=")
    if not sep or not name or not ref:
        raise HotswapError(f"bad {what} {spec!r}: expected NAME=module:attribute")
    return name, ref


def _report(
    machine: str, reply: Upgraded, notes: tuple[str, ...], derived: bool, trial: str = ""
) -> None:
    how = " (migration derived from the state types)" if derived else ""
    at = "" if reply.generation is None else f", generation {reply.generation}"
    print(f"Upgrade successful! {machine}: {reply.old[:12]} -> {reply.new[:12]}{at}{how}")
    if trial:
        print(
            f"It is a trial for {trial}: a trap in the new code takes it back; "
            f"`hotswap revert {machine}` to take it back, `hotswap confirm {machine}` to keep it"
        )
    for note in notes:
        print(f"Note: {note}")


def _status(args: argparse.Namespace) -> int:
    if args.key is not None:
        if not args.machine:
            raise HotswapError("--key names an instance of one machine: give the machine too")
        return _instance_status(args)
    with _connect(args) as client:
        names = [args.machine] if args.machine else [name for name, _ in client.machines()]
        for name in names:
            s = client.status_raw(name)  # one reply: inputs and state from the same moment
            input_type, state_type = decode_type(s.input_type), decode_type(s.state_type)
            output_type = decode_type(s.output_type)
            state = decode_value(s.state, state_type)
            print(f"{name}: {s.identity}")
            print(f"  types   input {input_type}, state {state_type}, output {output_type}")
            schemas = schemas_of(client.code(s.identity))
            if schemas is not None:
                named = ", ".join(f"{role} {describe(schemas[role])}" for role in ROLES)
                print(f"  names   {named}")
            print(f"  inputs  {s.inputs}")
            if s.generation is not None:
                print(f"  generation {s.generation} (changes of code since the start)")
            if s.trial is not None:
                print(f"  trial   {s.trial} input(s) left before the upgrade is permanent")
            if s.trial_until is not None:
                until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.trial_until))
                print(f"  trial   permanent at {until} unless reverted before")
            print(f"  state   {_shown(state, state_type, args.full)}")
            if schemas is not None:
                print(f"          {_shown(state, state_type, args.full, schemas['state'])}")
            if s.instances:
                _print_instances(s)
    return 0


def _print_instances(s: StatusReply) -> None:
    """The keyed instances part of a machine's status."""
    codes = ", ".join(f"{c.identity[:12]}: {c.instances}" for c in s.codes)
    print(f"  instances {s.instances} (by code: {codes})")
    if s.sweep is not None:
        sweep = s.sweep
        rate = f"{sweep.rate}/s" if sweep.rate else "off"
        print(
            f"  sweeper {rate}: {sweep.migrated} migrated, {sweep.remaining} not on the running "
            f"code yet, {sweep.trapped} trapped"
        )
    for t in s.trapped:
        print(f"  trapped {t.key!r}: {t.reason}")


def _instance_status(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        s = client.status_raw(args.machine, key=args.key)
        state_type = decode_type(s.state_type)
        state = decode_value(s.state, state_type)
        print(f"{args.machine}[{args.key!r}]: {s.identity}")
        print(f"  inputs  {s.inputs}")
        print(f"  generation {s.generation} (of the machine's code it runs)")
        print(f"  state   {_shown(state, state_type, args.full)}")
        schemas = schemas_of(client.code(s.identity))
        if schemas is not None:
            print(f"          {_shown(state, state_type, args.full, schemas['state'])}")
        for t in s.trapped:
            print(f"  trapped {t.reason}")
    return 0


def _instances(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise HotswapError(f"--limit counts the keys to list: give N >= 1, not {args.limit}")
    left = args.limit
    after = args.after
    with _connect(args) as client:
        while left is None or left > 0:
            page = client.instances(
                args.machine, args.prefix, after, MAX_PAGE if left is None else min(left, MAX_PAGE)
            )
            for key in page.keys:
                # one key a line, as typed: a key holding a newline or a terminal escape is
                # shown quoted (as Python writes it), never passed to the terminal raw
                print(key if key.isprintable() else repr(key))
            if left is not None:
                left -= len(page.keys)
            if not page.more:
                break
            after = page.after
            if left == 0:
                print(f"(more keys follow: --after {after!r})", file=sys.stderr)
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        gone = client.delete(args.machine, args.key)
    print(f"Deleted {args.machine}[{gone.key!r}] after {gone.inputs} input(s)")
    return 0


def _connect(args: argparse.Namespace) -> Client:
    given = [getattr(args, f"tls_{n}", None) for n in ("ca", "cert", "key")]
    ca, cert, key = (Path(g) if g else None for g in given)
    tls = default_client_context(ca, cert, key)  # what is not given comes from the environment
    return connect(args.node, token=getattr(args, "token", None), tls=tls or False)


def _token(args: argparse.Namespace) -> int:
    """``hotswap token add|revoke|list``: the principals of a node's data directory (a running
    node takes a change in within a second)."""
    path = Path(args.data) / "credentials.json"
    credentials = Credentials.load(path)
    if args.action == "add":
        if not args.name or not args.roles:
            raise HotswapError("`hotswap token add NAME --roles ROLE[,ROLE]` names whom and what")
        roles = [r.strip() for r in args.roles.split(",") if r]
        if args.certificate:
            credentials.add_certified(args.name, roles)
            credentials.save(path)
            print(
                f"{args.name} authenticates by a client certificate whose common name is "
                f"{args.name!r} (on a node with --tls-ca; a running node takes it in within a "
                "second)"
            )
            return 0
        token = credentials.add(args.name, roles)
        credentials.save(path)
        print(f"Token for {args.name} (shown once; a running node takes it in within a second):")
        print(token)
    elif args.action == "revoke":
        if not args.name:
            raise HotswapError("`hotswap token revoke NAME` names whose tokens to revoke")
        gone = credentials.revoke(args.name)
        if not gone:
            raise HotswapError(f"{path} has no token for {args.name!r}")
        credentials.save(path)
        print(
            f"Revoked {args.name} ({gone} credential(s)); a running node drops it within a "
            "second, closing its connections"
        )
    else:
        for p in credentials.principals:
            how = " (client certificate)" if credentials.by_certificate(p.name) else ""
            print(f"{p.name}: {', '.join(sorted(p.roles, key=AUTH_ROLES.index))}{how}")
    return 0


def _tls_init(args: argparse.Namespace) -> int:
    made = write_authority(Path(args.out), args.host, args.client)
    print(f"Authority {made.ca} (its key {made.ca.with_suffix('.key')}: keep it offline)")
    print(
        f"Node: hotswap node --tls-cert {made.node_cert} --tls-key {made.node_key} "
        f"[--tls-ca {made.ca} to require client certificates]"
    )
    for name, cert, key in made.clients:
        print(f"Client {name}: --tls-ca {made.ca} --tls-cert {cert} --tls-key {key}")
    if not made.clients:
        print(f"Clients: --tls-ca {made.ca} (or HOTSWAP_TLS_CA={made.ca})")
    return 0


def _sign_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sign",
        default=None,
        metavar="KEYFILE",
        help="sign the change with this private key, for a node started with --trust "
        "(default: $HOTSWAP_SIGNING_KEY, if set)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write the change to FILE instead of making it: `hotswap sign FILE --key KEYFILE` "
        "signs it, `hotswap apply FILE` makes it",
    )


def _write_out(client: Client, args: argparse.Namespace, flow: Flow[object]) -> int:
    """``--out FILE``: the change the command would make, written down (signed with
    ``--sign``), not made."""

    def generation(machine: str) -> int:
        found = client.status_raw(machine).generation
        if found is None:
            raise HotswapError(f"the node reports no generation of {machine}: upgrade the node")
        return found

    change = capture(flow, client.request, generation)
    path = Path(args.out)
    write_change(change, path)
    print(f"Wrote {path}, which makes this change:")
    for line in change.lines():
        print(f"  {line}")
    if change.signature:
        print(f"Signed. `hotswap apply {path}` makes it")
    else:
        print(f"Unsigned: `hotswap sign {path} --key KEYFILE`, then `hotswap apply {path}`")
    return 0


def _sign_file(args: argparse.Namespace) -> int:
    """``hotswap sign FILE --key KEYFILE``: sign a change file, offline."""
    path = Path(args.file)
    change = read_change(path)
    key = read_private_key(Path(args.key))
    print(f"Signing with key {key_id(key.public_key())}:")
    for line in change.lines():
        print(f"  {line}")
    out = Path(args.out) if args.out else path
    write_change(change.signed(key), out)
    print(f"Wrote {out}: `hotswap apply {out}` makes the change")
    return 0


def _apply(args: argparse.Namespace) -> int:
    """``hotswap apply FILE``: make the change a change file holds."""
    change = read_change(Path(args.file))
    with _connect(args) as client:
        request = replace(change.request, id=client.session.request_id())
        reply = client.request(request)
    match request:
        case UpgradeRequest(machine=name):
            _report(name, expect(reply, Upgraded), (), derived=False)
        case Release():
            released = expect(reply, Released)
            print(f"Release successful! {len(released.machines)} machines swapped together:")
            for entry in released.machines:
                print(f"  {entry.machine}: {entry.old[:12]} -> {entry.new[:12]}")
        case Deploy(machine=name):
            done = expect(reply, Deployed)
            state = "Deployed" if done.started else "Already running:"
            print(f"{state} machine {name!r} on {done.identity[:12]}")
    return 0


def _sign(client: Client, args: argparse.Namespace) -> None:
    key = args.sign or os.environ.get("HOTSWAP_SIGNING_KEY") or None
    if key is not None:
        client.session.sign_with(key)


def _keygen(args: argparse.Namespace) -> int:
    private, public = Path(args.out), Path(args.out + ".pub")
    if public.exists():
        raise HotswapError(f"{public} exists: choose another --out, or remove the old key pair")
    key = generate_key()
    write_private_key(key, private)
    line = public_line(key.public_key(), args.comment)
    public.write_text(line + "\n", encoding="utf-8")
    print(f"Private key {private} (keep it secret), public key {public}:")
    print(line)
    print(f"Key id {key_id(key.public_key())}: start nodes with --trust {public}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    code = import_object(args.code)
    module_bytes(code, args.code)  # a bad reference fails here, named
    with _connect(args) as client:
        _sign(client, args)
        if args.out:
            return _write_out(client, args, client.session.deploy(args.name, code))
        done = client.deploy(args.name, code)
    if done.started:
        print(f"Deployed machine {args.name!r} on {done.identity[:12]}")
    else:
        print(f"Machine {args.name!r} already runs {done.identity[:12]}: nothing changed")
    return 0


ROLES = ("input", "state", "output")
CHECK_ALL_HELP = (
    "first run the migration on every keyed instance; refuse, changing nothing, if it traps on any"
)


def _types(args: argparse.Namespace) -> int:
    """A version's types as an importable module, for migrations written against them."""
    with _connect(args) as client:
        status = client.status_raw(args.machine)
        identity = args.version or status.identity
        known = [entry.identity for entry in status.history]
        matches = sorted({i for i in known if i.startswith(identity)})
        if not matches:
            raise HotswapError(
                f"{args.machine} has never run code {identity!r}: give an identity (or a "
                "prefix of one) from `hotswap history`"
            )
        if len(matches) > 1:
            raise HotswapError(
                f"{identity!r} is the prefix of {len(matches)} versions of {args.machine}: "
                "give a longer prefix of an identity from `hotswap history`"
            )
        code = client.code(matches[0])
    schemas = module_schemas(code)
    if schemas is None:
        raise HotswapError(
            f"{args.machine}'s code {matches[0][:12]} carries no names: its types have no "
            "Python names to write (it was not compiled from Python by hotswap.dsl)"
        )
    sys.stdout.write(python_source(schemas, machine=args.machine, identity=matches[0]))
    return 0


def _history(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        for generation, entry in enumerate(client.status_raw(args.machine).history):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.time))
            by = entry.by or "-"  # who made the change: none known without --auth
            if not by.isprintable() or " " in by:
                by = repr(by)
            signed = "" if entry.signer is None else f"  signed {entry.signer}"
            print(
                f"{when}  {entry.kind:<8} {entry.identity}  after {entry.seq} inputs"
                f"  by {by}{signed}  (generation {generation})"
            )
    return 0


def _dis(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes()
    loaded = load_module(data)
    print(disassemble(loaded.module, data))
    return 0


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands that talk to a node, or to no node at all (``dis``)."""

    def client_command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        fallback = f"HOST:PORT (default: $HOTSWAP_NODE, else {DEFAULT_ADDRESS})"
        p.add_argument("--node", default=None, help=fallback)
        p.add_argument(
            "--token",
            default=None,
            help="for a node started with --auth (default: $HOTSWAP_TOKEN, or for a node on "
            "this machine its data directory's client.token)",
        )
        p.add_argument(
            "--tls-ca",
            default=None,
            metavar="FILE",
            help="connect over TLS, checking the node's certificate against this authority "
            "(default: $HOTSWAP_TLS_CA; $HOTSWAP_TLS=1 for the system's)",
        )
        p.add_argument(
            "--tls-cert",
            default=None,
            metavar="FILE",
            help="this client's certificate, for a node that requires one (default: "
            "$HOTSWAP_TLS_CERT)",
        )
        p.add_argument(
            "--tls-key", default=None, metavar="FILE", help="its key (default: $HOTSWAP_TLS_KEY)"
        )
        return p

    send = client_command("send", "send one input: 'L Unit' (the seed's syntax) or 'Incr()'")
    send.add_argument("machine")
    send.add_argument("value")
    send.add_argument(
        "--names", action="store_true", help="show output and state by their Python names"
    )
    send.add_argument("--key", default=None, help="the keyed instance (default: the machine's)")
    send.add_argument(
        "--full",
        action="store_true",
        help=f"print the whole state (else {SHOWN:,} characters)",
    )
    send.set_defaults(func=_send)

    upgrade = client_command("upgrade", "upgrade a running machine")
    upgrade.add_argument("machine")
    upgrade.add_argument("--to", required=True, metavar="module:attribute")
    upgrade.add_argument(
        "--migration",
        default=None,
        metavar="module:attribute",
        help="the state migration (default: derived from the state types' names)",
    )
    upgrade.add_argument("--expect", default=None, help="identity expected (default: running)")
    upgrade.add_argument(
        "--generation",
        type=int,
        default=None,
        help="generation expected (default: the running one); refuses a replayed upgrade",
    )
    upgrade.add_argument(
        "--rename",
        action="store_true",
        help="accept a migration whose names differ from the states' (a deliberate rename)",
    )
    upgrade.add_argument(
        "--dry-run",
        action="store_true",
        help="change nothing: replay recent inputs through the new code and show differences",
    )
    upgrade.add_argument(
        "--inputs",
        type=int,
        default=None,
        metavar="N",
        help="with --dry-run: how many recent inputs to replay (1000)",
    )
    upgrade.add_argument(
        "--trial",
        type=int,
        default=None,
        metavar="N",
        help="provisional for the next N inputs: a trap or `hotswap revert` takes it back",
    )
    upgrade.add_argument(
        "--trial-seconds",
        type=int,
        default=None,
        metavar="T",
        help="provisional for T seconds (with --trial: whichever ends first)",
    )
    upgrade.add_argument("--check-all", action="store_true", help=CHECK_ALL_HELP)
    _sign_option(upgrade)
    upgrade.set_defaults(func=_upgrade)

    for name, what in (("confirm", "keep"), ("revert", "take back")):
        end = client_command(name, f"{what} a machine's trial upgrade")
        end.add_argument("machine")
        end.set_defaults(func=_end_trial)

    release = client_command("release", "upgrade several machines together, all or none")
    release.add_argument("machines", nargs="+", metavar="NAME=module:attribute")
    release.add_argument(
        "--migration",
        action="append",
        default=[],
        metavar="NAME=module:attribute",
        help="the state migration of one machine (default: derived from names)",
    )
    _sign_option(release)
    release.set_defaults(func=_release)

    fleet = sub.add_parser("fleet-upgrade", help="upgrade a machine on several nodes, rolling")
    fleet.add_argument("machine")
    fleet.add_argument("--nodes", required=True, help="HOST:PORT,HOST:PORT,... in upgrade order")
    fleet.add_argument("--to", required=True, metavar="module:attribute")
    fleet.add_argument("--migration", default=None, metavar="module:attribute")
    fleet.add_argument(
        "--back",
        default=None,
        metavar="module:attribute",
        help="the migration for rolling back if a node refuses (default: derived)",
    )
    fleet.add_argument("--expect", default=None, help="identity expected (default: first node's)")
    fleet.set_defaults(func=_fleet_upgrade)

    rollback = client_command("rollback", "go back to the code that ran before the current one")
    rollback.add_argument("machine")
    rollback.add_argument(
        "--migration",
        default=None,
        metavar="module:attribute",
        help="the state migration back (default: derived from the state types' names)",
    )
    rollback.add_argument("--check-all", action="store_true", help=CHECK_ALL_HELP)
    _sign_option(rollback)
    rollback.set_defaults(func=_rollback)

    status = client_command("status", "show machines, their code, types and state")
    status.add_argument("machine", nargs="?")
    status.add_argument("--key", default=None, help="show this keyed instance of the machine")
    status.add_argument(
        "--full",
        action="store_true",
        help=f"print whole states (else {SHOWN:,} characters each)",
    )
    status.set_defaults(func=_status)

    instances = client_command("instances", "list a machine's keyed instances, in key order")
    instances.add_argument("machine")
    instances.add_argument("--prefix", default=None, help="only keys starting with this")
    instances.add_argument("--after", default=None, help="only keys after this one")
    instances.add_argument("--limit", type=int, default=None, help="at most N keys (all)")
    instances.set_defaults(func=_instances)

    delete = client_command("delete", "end a keyed instance of a machine")
    delete.add_argument("machine")
    delete.add_argument("--key", required=True, help="the instance to end")
    delete.set_defaults(func=_delete)

    deploy = client_command("deploy", "add a machine to the running node")
    deploy.add_argument("name")
    deploy.add_argument("--code", required=True, metavar="module:attribute")
    _sign_option(deploy)
    deploy.set_defaults(func=_deploy)

    token = sub.add_parser("token", help="add, revoke or list the tokens of a node (--auth)")
    token.add_argument("action", choices=["add", "revoke", "list"])
    token.add_argument("name", nargs="?", default=None)
    token.add_argument("--roles", default=None, help=f"comma-separated, of {', '.join(AUTH_ROLES)}")
    token.add_argument("--data", default="hotswap-data", help="the node's data directory")
    token.add_argument(
        "--certificate",
        action="store_true",
        help="add: the principal authenticates by a client certificate whose common name is "
        "NAME (mutual TLS, a node with --tls-ca), and gets no token",
    )
    token.set_defaults(func=_token)

    signer = sub.add_parser("sign", help="sign a change file (`upgrade ... --out FILE`), offline")
    signer.add_argument("file")
    signer.add_argument("--key", required=True, metavar="KEYFILE", help="from `hotswap keygen`")
    signer.add_argument("--out", default=None, metavar="FILE", help="(default: sign in place)")
    signer.set_defaults(func=_sign_file)

    apply = client_command("apply", "make the change a change file holds (signed or not)")
    apply.add_argument("file")
    apply.set_defaults(func=_apply)

    tls = sub.add_parser("tls-init", help="make a TLS authority, a node certificate and clients'")
    tls.add_argument("--out", required=True, metavar="DIR", help="where to write the files")
    tls.add_argument(
        "--host",
        action="append",
        required=True,
        help="a name or IP address clients reach the node at (repeatable)",
    )
    tls.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="NAME",
        help="a client certificate with this common name (repeatable)",
    )
    tls.set_defaults(func=_tls_init)

    keygen = sub.add_parser("keygen", help="make a key pair to sign changes of code with")
    keygen.add_argument(
        "--out", required=True, metavar="FILE", help="the private key; the public one: FILE.pub"
    )
    keygen.add_argument("--comment", default="", help="a note kept with the public key")
    keygen.set_defaults(func=_keygen)

    types = client_command("types", "print a version's types as Python dataclasses")
    types.add_argument("machine")
    types.add_argument(
        "--version",
        default=None,
        metavar="ID",
        help="an identity (or a prefix) from `hotswap history` (default: the running code)",
    )
    types.set_defaults(func=_types)

    history = client_command(
        "history", "show the code versions a machine has run, and who installed each"
    )
    history.add_argument("machine")
    history.set_defaults(func=_history)

    dis = sub.add_parser("dis", help="verify a module file and print its disassembly")
    dis.add_argument("file", help="a module file (canonical bytes)")
    dis.set_defaults(func=_dis)


def run(args: argparse.Namespace) -> int:
    """Run the command ``args`` selected; any failure is one line on stderr and status 1."""
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a reader gone away is found here, not at the interpreter's exit
    except BrokenPipeError:  # `hotswap status | head`: the reader took what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell says of a command that SIGPIPE ended
    except HotswapError as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"hotswap: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
