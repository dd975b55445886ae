"""Whole-module verification: every function's code, and the signatures that tie them together."""

from __future__ import annotations

from dataclasses import dataclass

from hotswap.cam.module import Module
from hotswap.cam.verify import CodeInfo, verify_code
from hotswap.errors import VerifyError
from hotswap.lang.types import UNIT, Prod


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """Verification results per function, in module order."""

    functions: tuple[CodeInfo, ...]

    @property
    def max_steps(self) -> int:
        return max((f.max_steps for f in self.functions), default=0)


def verify_module(m: Module) -> ModuleInfo:
    """Verify every function and the machine signature; :class:`VerifyError` says what failed."""
    infos = []
    for i, f in enumerate(m.functions):
        try:
            infos.append(verify_code(f.code, f.dom, f.cod))
        except VerifyError as e:
            raise type(e)(f"function {i}: {e}") from None
    if m.machine:
        sig = m.machine
        init, step = m.functions[sig.init], m.functions[sig.step]
        if init.dom is not UNIT or init.cod is not sig.state:
            raise VerifyError(f"init is {init.dom} -> {init.cod}, expected Unit -> {sig.state}")
        dom, cod = Prod(sig.input, sig.state), Prod(sig.state, sig.output)
        if step.dom is not dom or step.cod is not cod:
            raise VerifyError(f"step is {step.dom} -> {step.cod}, expected {dom} -> {cod}")
    return ModuleInfo(tuple(infos))
