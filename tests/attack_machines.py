"""Machines for the attacks on a node process (tests/test_node_attacks.py), which imports them by
name (``attack_machines:counts``) with ``tests`` on its ``PYTHONPATH``."""

from __future__ import annotations

import json
from dataclasses import replace

from hotswap.cam.instructions import Instr, Opcode
from hotswap.cam.limits import MAX_MODULE_BYTES
from hotswap.cam.module import Module, encode_module
from hotswap.examples import handbuilt
from hotswap.lang.terms import Op
from hotswap.names.section import SECTION
from test_node_trace import counts_module

#: Keys in the state of :func:`counts`: its trace shows 246 KB each input, uncut.
COUNTED = 14_500


def counts() -> bytes:
    """A map of counts by key, 14,500 keys to begin with: a state of 246 KB in the seed's
    syntax."""
    return counts_module(COUNTED).data


def big_module() -> bytes:
    """The handbuilt counter (from 7) in a module at the size limit, 16 MiB."""
    return padded(handbuilt.counter_module(7))


def wide_names(fields: int = 20_000) -> bytes:
    """A names section of about 300 KB: a record of ``fields`` int fields for the input. It
    cannot describe a counter's input (a Bool): what costs is reading it at all."""
    record = {"record": "Wide", "fields": [[f"f{i}", "int"] for i in range(fields)]}
    tree = {"input": record, "output": "int", "state": "int", "version": 1}
    return json.dumps(tree, sort_keys=True, separators=(",", ":")).encode("ascii")


def with_names(module: Module, names: bytes) -> bytes:
    """``module`` with ``names`` as its names section."""
    return encode_module(replace(module, custom=((SECTION, names),)))


def padded(module: Module, size: int = MAX_MODULE_BYTES, tag: bytes = b"") -> bytes:
    """``module``'s bytes with a custom section that brings them to ``size`` bytes (``tag``
    first in it: modules with other tags have other bytes, the same identity)."""
    base = len(encode_module(module))
    for slack in range(16, 64):  # the section's own header grows with its length
        pad = (tag + b"\0" * size)[: size - base - slack]
        data = encode_module(replace(module, custom=(*module.custom, ("zz-pad", pad))))
        if len(data) <= size:
            return data
    raise AssertionError("cannot pad the module to its size")


def busy_counter(instructions: int = 65_000) -> tuple[Module, Module]:
    """The handbuilt counter, version 2, and its migration, each made to do ``instructions``
    more instructions of work that changes nothing (adding 0 to the state, over and over), so
    that decoding, verifying and compiling them costs what the module limits allow."""
    v2, migration = handbuilt.counter2_module(), handbuilt.upgrade_state_module()
    add_zero = (
        Instr(Opcode.PUSH),
        Instr(Opcode.LIT, 0),
        Instr(Opcode.CONS),
        Instr(Opcode.PRIM, Op.ADD),
    )
    repeat = instructions // len(add_zero)
    # The migration, Int -> Int x Int: the state gets 0 added many times first.
    (mig,) = migration.functions
    busy_mig = replace(mig, code=add_zero * repeat + mig.code)
    # The step ends with (state, output) in the register: the state, (old, n), gets 0 added to
    # its n many times, and the pair is put back together.
    step = v2.functions[1]
    tail = [Instr(Opcode.PUSH), Instr(Opcode.FST), Instr(Opcode.PUSH), Instr(Opcode.SND)]
    tail += [*add_zero * repeat, Instr(Opcode.SWAP), Instr(Opcode.FST), Instr(Opcode.SWAP)]
    tail += [Instr(Opcode.CONS), Instr(Opcode.SWAP), Instr(Opcode.SND), Instr(Opcode.CONS)]
    busy_step = replace(step, code=step.code + tuple(tail))
    return (
        replace(v2, functions=(v2.functions[0], busy_step)),
        replace(migration, functions=(busy_mig,)),
    )
