"""Compiling the fast path's large sources in a child process, off the node's GIL.

A module at the instruction limit becomes Python source of about two megabytes a function, and
Python's ``compile`` holds the GIL while it parses and compiles it: half a second during which
the node's event loop, though the module loads on a worker thread, serves nobody. So a node
compiles such sources in a short-lived child process (the same interpreter, isolated: ``-I
-S``), which sends back the code object marshalled; unmarshalling it takes a few milliseconds.
Small sources, nearly all of them, are compiled here, where that is quicker than a process.
And the node lets a thread that waits for the GIL have it within a millisecond, not Python's
five: the event loop's thread, when a worker thread is busy decoding and verifying a module.

The child only ever sees source the node generated itself from verified code, and the node only
unmarshals what its own child wrote. If the child fails for any reason (it could not start, it
ran out of memory, the source does not compile), the source is compiled here, so the result,
or the error, is exactly what ``compile`` gives.
"""

from __future__ import annotations

import gc
import marshal
import subprocess
import sys
from types import CodeType

from hotswap.cam import codegen

#: Sources shorter than this many characters are compiled in this process (about 2,000
#: instructions; a few milliseconds).
THRESHOLD = 64 * 1024
#: How long a child may take before its source is compiled here instead.
TIMEOUT = 60.0
#: Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005).
SWITCH_INTERVAL = 0.001

_CHILD = (
    "import marshal, sys\n"
    "source = sys.stdin.buffer.read().decode('utf-8')\n"
    f"code = compile(source, {codegen.SOURCE_NAME!r}, 'exec', dont_inherit=True, "
    "optimize=int(sys.argv[1]))\n"
    "sys.stdout.buffer.write(marshal.dumps(code))\n"
)


def compile_source(source: str) -> CodeType:
    """What ``codegen`` compiles ``source`` to, in a child process when ``source`` is large."""
    if len(source) >= THRESHOLD:
        code = _in_child(source)
        if code is not None:
            return code
    return compile(source, codegen.SOURCE_NAME, "exec", dont_inherit=True)


def _in_child(source: str) -> CodeType | None:
    args = [sys.executable, "-I", "-S", "-c", _CHILD, str(sys.flags.optimize)]
    try:
        done = subprocess.run(
            args, input=source.encode("utf-8"), capture_output=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    try:
        code = marshal.loads(done.stdout)
    except (EOFError, ValueError, TypeError):
        return None
    return code if isinstance(code, CodeType) else None


def keep_the_loop_free() -> None:
    """What a node does before it serves: compile large generated sources in child processes,
    let a thread waiting for the GIL (the event loop's, while an upgrade's modules load on
    a worker thread) have it within :data:`SWITCH_INTERVAL` rather than Python's 5 ms, and
    freeze what startup made (modules, compiled code, recovered states) out of the cyclic
    garbage collector's collections, which then walk only what came after.

    At 200,000 keyed instances the collector's full collections took 35 ms each (median of
    nine in 15 s), walking every live object; with startup frozen, 14 ms. No collection comes
    first: one would walk a large recovered state for nothing. (Collecting less often, with
    thresholds of 20,000, 20, 20, spent less time in the collector but cost about a tenth of
    the inputs a second over 1,000,000 instances in two alternating rounds: a larger youngest
    generation is walked where the processor's caches no longer hold it. Not kept.)"""
    codegen.set_compiler(compile_source)
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.freeze()
