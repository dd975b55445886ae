"""Change files: a change of code written down to be signed elsewhere and made later.

A node started with ``--trust`` makes a change of code only with a signature by a trusted key.
Whoever holds that key need not hold a token of the node, nor run anything against it:

1. ``hotswap upgrade ... --out change.hsc`` (or ``rollback``, ``release``, ``deploy``) asks
   the node what the change replaces (a ``read`` token is enough) and writes the request it
   would send, unsigned, with the generations it applies at;
2. ``hotswap sign change.hsc --key release.key`` shows what the file changes and signs it,
   offline;
3. ``hotswap apply change.hsc`` sends it (an ``upgrade`` token): the node checks the
   signature, and that the machine is still at the generation signed.

The file is a CBOR map (docs/protocol.md, section 3.5)::

    {"format": "hotswap-change/1", "message": <the request, encoded as on the wire, version 3>,
     "generations": {machine: generation, ...}}

``generations`` holds the generation of every machine the change replaces code of (for a
release, the one thing the request itself does not carry).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hotswap.errors import HotswapError, RemoteProtocolError
from hotswap.protocol.codec import decode_message, encode_message
from hotswap.protocol.events import Deploy, Release, Request, UpgradeRequest
from hotswap.signing import Claim, ReleaseClaim, digest, sign

__all__ = [
    "FORMAT",
    "Change",
    "ChangeProblem",
    "capture",
    "claim_of",
    "read_change",
    "write_change",
]

FORMAT = "hotswap-change/1"
#: A change file is refused unread past this size (two modules at their limit, and more).
MAX_FILE = 64 * 1024 * 1024

Changing = UpgradeRequest | Release | Deploy


class ChangeProblem(HotswapError):
    """A change file that cannot be read, signed or applied, and why."""


@dataclass(frozen=True, slots=True)
class Change:
    """A request that changes code, and the generation of each machine it replaces."""

    request: Changing
    generations: dict[str, int]

    @property
    def claim(self) -> Claim | ReleaseClaim:
        """What a signature over this change allows (``hotswap.signing``)."""
        claim = claim_of(self.request, self._generation)
        assert claim is not None  # _generation raises for a machine the file lacks
        return claim

    def _generation(self, machine: str) -> int:
        try:
            return self.generations[machine]
        except KeyError:
            raise ChangeProblem(f"the change file has no generation for {machine}") from None

    def signed(self, key: Ed25519PrivateKey) -> Change:
        """This change with a signature by ``key``."""
        signature = sign(key, self.claim)
        return Change(replace(self.request, signature=signature), self.generations)

    def lines(self) -> list[str]:
        """What the change does, as a signer should read it before signing."""
        match self.request:
            case UpgradeRequest() as r:
                options = [f"rename={r.rename}"] * r.rename
                options += [f"trial={r.trial} input(s)"] * bool(r.trial)
                options += [f"trial={r.trial_seconds} s"] * bool(r.trial_seconds)
                options += ["check_all"] * r.check_all
                shown = [
                    f"upgrade {r.machine} at generation {self._generation(r.machine)}",
                    f"  from code   {r.expected}",
                    f"  to module   sha256 {digest(r.module)} ({len(r.module)} bytes)",
                    f"  migration   sha256 {digest(r.migration)} ({len(r.migration)} bytes)",
                ]
                if options:
                    shown.append(f"  options     {', '.join(options)}")
                return shown
            case Release(items=items):
                shown = [f"release of {len(items)} machines, all or none:"]
                for i in items:
                    shown += [
                        f"  {i.machine} at generation {self._generation(i.machine)}",
                        f"    from code   {i.expected}",
                        f"    to module   sha256 {digest(i.module)} ({len(i.module)} bytes)",
                        f"    migration   sha256 {digest(i.migration)}",
                    ]
                return shown
            case Deploy(machine=name, module=data):
                return [
                    f"deploy {name}",
                    f"  module      sha256 {digest(data)} ({len(data)} bytes)",
                ]
        return []  # pragma: no cover - every change is one of the three

    @property
    def signature(self) -> bytes:
        return self.request.signature


def claim_of(
    request: Changing,
    generation: Callable[[str], int | None],
    hashed: Callable[[bytes], str] = digest,
) -> Claim | ReleaseClaim | None:
    """What a signature over ``request`` allows (docs/protocol.md, section 3.4): the one rule
    the signing client, the change file and the node share. An upgrade is claimed at the
    generation it names, else at ``generation(machine)``; a release's items at
    ``generation(machine)`` each; a deploy at 0. None if ``generation`` knows no machine the
    change replaces (the node refuses it as unknown); :class:`SignatureProblem` for a release
    whose machines are not distinct and in order. ``hashed``: :func:`digest`, or a memo of it."""
    match request:
        case UpgradeRequest(machine=name) as r:
            known = generation(name)
            if known is None:
                return None
            at = known if r.generation is None else r.generation
            return Claim(
                "upgrade",
                name,
                r.expected,
                at,
                hashed(r.module),
                hashed(r.migration),
                r.rename,
                r.trial,
                r.trial_seconds,
                r.check_all,
            )
        case Release(items=items):
            claims = []
            for i in items:
                current = generation(i.machine)
                if current is None:
                    return None
                claim = Claim(
                    "release", i.machine, i.expected, current, hashed(i.module), hashed(i.migration)
                )
                claims.append(claim)
            return ReleaseClaim(tuple(claims))
        case Deploy(machine=name, module=data):
            return Claim("deploy", name, "", 0, hashed(data))
    return None


def capture(
    flow: Generator[Request, object, object],
    send: Callable[[Request], object],
    status_generation: Callable[[str], int],
) -> Change:
    """Drive a client ``flow`` (``session.upgrade(...)`` and the like), sending every request
    it makes with ``send`` until the one that changes code, which is returned instead of
    sent, with the generations of the machines it replaces (``status_generation(machine)``)."""
    reply: object = None
    try:
        event = next(flow)
        while not isinstance(event, UpgradeRequest | Release | Deploy):
            reply = send(event)
            event = flow.send(reply)
    except StopIteration:
        raise ChangeProblem("the command made no change of code to write down") from None
    finally:
        flow.close()
    generations: dict[str, int] = {}
    match event:
        case UpgradeRequest(machine=name, generation=generation):
            if generation is None:
                generation = status_generation(name)
                event = replace(event, generation=generation)
            generations[name] = generation
        case Release(items=items):
            for item in items:
                generations[item.machine] = status_generation(item.machine)
        case Deploy():
            pass
    return Change(event, generations)


def write_change(change: Change, path: Path) -> None:
    """Write ``change`` to ``path`` (replacing it atomically)."""
    payload = encode_message(replace(change.request, id=1), 3)
    doc = {"format": FORMAT, "message": payload, "generations": change.generations}
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(cbor2.dumps(doc, canonical=True))
    os.replace(partial, path)


def read_change(path: Path) -> Change:
    """The change in ``path``; :class:`ChangeProblem` naming what is wrong otherwise."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE:
            raise ChangeProblem(f"{path} has {size} bytes: a change file has at most {MAX_FILE}")
        data = path.read_bytes()
    except OSError as e:
        raise ChangeProblem(f"cannot read the change file {path}: {e.strerror or e}") from None
    try:
        doc = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as e:
        raise ChangeProblem(f"{path} is not a change file (not CBOR: {e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ChangeProblem(f"{path} is not a change file of format {FORMAT}")
    extra = sorted(str(k) for k in doc if k not in ("format", "message", "generations"))
    if extra:
        raise ChangeProblem(f"{path}: a change file has no key {', '.join(extra)}")
    message, generations = doc.get("message"), doc.get("generations")
    if not isinstance(message, bytes) or not isinstance(generations, dict):
        raise ChangeProblem(f"{path}: a change file has a `message` and `generations`")
    if not all(
        isinstance(k, str) and isinstance(v, int) and 0 <= v < 2**63 for k, v in generations.items()
    ):
        raise ChangeProblem(f"{path}: `generations` maps machine names to generations")
    try:
        request = decode_message(message, from_client=True, version=3)
    except RemoteProtocolError as e:
        raise ChangeProblem(f"{path}: its request does not decode: {e}") from None
    if not isinstance(request, UpgradeRequest | Release | Deploy):
        raise ChangeProblem(f"{path} holds a {type(request).__name__}, not a change of code")
    change = Change(request, dict(generations))
    change.claim  # noqa: B018 - every machine it changes has its generation
    if isinstance(request, UpgradeRequest) and request.generation != generations[request.machine]:
        msg = (
            f"{path}: its upgrade names generation {request.generation} of {request.machine}, "
            f"its `generations` {generations[request.machine]}: the file was changed"
        )
        raise ChangeProblem(msg)
    return change
