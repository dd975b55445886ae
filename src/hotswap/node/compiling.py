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
#: The cyclic collector's thresholds while a node serves (Python's are 700, 10, 10). Each
#: input leaves a tracked object or two (a row, a reply, an instance's state) that lives
#: past the next youngest collection, and with Python's thresholds a node at 200,000 keyed
#: instances spent 0.7 s of every 15 s in the collector: 1,065 youngest collections, 96 of
#: the middle one (1.2 ms each) and 9 full ones (35 ms each, walking every live instance).
#: With these and startup frozen: 0.3 s, 42 (3 ms each), 2 (32 ms) and 1 (16 ms): fewer,
#: longer stops, less time in all. Nothing the node keeps depends on the collector (its
#: structures hold no cycles); what cycles there are wait for the collections still made.
GC_THRESHOLDS = (20_000, 20, 20)

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
    tune the cyclic garbage collector (:data:`GC_THRESHOLDS`): what startup made (modules,
    compiled code, recovered states) is frozen out of its collections."""
    codegen.set_compiler(compile_source)
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.freeze()  # no collection first: a recovered state of millions of objects would cost
    gc.set_threshold(*GC_THRESHOLDS)  # the restart a walk of them all, to free next to nothing
