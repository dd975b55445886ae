"""Readable listings of modules and code."""

from __future__ import annotations

from hotswap.cam.instructions import JUMPS, Code
from hotswap.cam.module import Module, module_identity


def disassemble_code(code: Code, indent: str = "  ") -> str:
    """One instruction per line: ``pc  OP arg``, jumps with their absolute target."""
    lines = []
    width = len(str(max(len(code) - 1, 0)))
    for pc, instr in enumerate(code):
        text = str(instr)
        if instr.op in JUMPS and isinstance(instr.arg, int):
            text += f"  -> {pc + 1 + instr.arg}"
        lines.append(f"{indent}{pc:>{width}}  {text}")
    return "\n".join(lines)


def disassemble(m: Module, data: bytes | None = None) -> str:
    """A listing of the whole module: signature, functions, custom sections."""
    lines = []
    if data is not None:
        lines.append(f"module {module_identity(data)}")
    roles: dict[int, str] = {}
    if m.machine:
        sig = m.machine
        lines.append(f"machine  input {sig.input}  state {sig.state}  output {sig.output}")
        roles[sig.init] = "init"
        roles[sig.step] = "step"
    if m.migration is not None:
        roles[m.migration] = "migration"
    for i, f in enumerate(m.functions):
        lines.append(f"function {i} ({roles.get(i, '?')}): {f.dom} -> {f.cod}")
        lines.append(disassemble_code(f.code))
    for name, payload in m.custom:
        lines.append(f"custom {name!r}: {len(payload)} bytes")
    return "\n".join(lines)
