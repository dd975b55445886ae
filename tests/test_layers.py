"""The layering of docs/design.md ("Layers"): each layer imports only the layers below it.

Checked twice: statically, on every import statement of every module (those inside functions
and ``TYPE_CHECKING`` blocks included), and dynamically, by importing entry points in a fresh
interpreter and looking at what got loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "hotswap"

#: A layer may import layers of a lower rank, and itself; never a layer beside or above it.
RANK = {
    "errors": 0,
    "lang": 1,
    "cam": 2,
    "names": 3,
    "protocol": 3,
    "auth": 3,
    "signing": 3,
    "tls": 3,
    "address": 4,
    "changes": 4,
    "code": 4,
    "dsl": 4,
    "node": 5,
    "client": 5,
    "fleet": 6,
    "examples": 6,
    "cli": 7,
    "__main__": 8,
    "__init__": 8,
}
#: Pairs that the ranks alone would allow but that must never happen, with the reason.
FORBIDDEN = {
    ("node", "dsl"): "the node runs bytecode; it must not load the Python compiler",
    ("node", "client"): "the node must not depend on its own clients",
    ("client", "node"): "a client must not load the server, the store or SQLite",
}
#: Layers that do no I/O of their own: no sockets, no event loop, no processes.
PURE = {"lang", "cam", "names", "protocol", "address", "code", "dsl"}
FORBIDDEN_IN_PURE = {"socket", "asyncio", "selectors", "ssl", "subprocess", "sqlite3"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _statements(tree: ast.AST, typing_only: bool) -> list[ast.AST]:
    """Every node of ``tree``; without ``typing_only``, none under ``if TYPE_CHECKING:``."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if (
            not typing_only
            and isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            todo.extend(node.orelse)
            continue
        out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def _imports(path: Path, typing_only: bool = True) -> set[str]:
    """Every module ``path`` imports, anywhere in it (functions included), relative imports
    resolved; ``typing_only=False`` leaves out what only the type checker imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in _statements(tree, typing_only):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return names


MODULES = sorted(SRC.rglob("*.py"))
_NAMES = {_module_name(p) for p in MODULES}
#: module -> the hotswap modules it imports (type-checking imports included).
GRAPH = {_module_name(p): _imports(p) & _NAMES for p in MODULES}
#: The same without type-checking imports: what can be loaded at run time.
RUNTIME = {_module_name(p): _imports(p, typing_only=False) & _NAMES for p in MODULES}


def test_every_module_belongs_to_a_known_layer() -> None:
    """A new top-level module must be placed in the layering explicitly."""
    unknown = {_layer(m) for m in GRAPH} - RANK.keys()
    assert not unknown, f"modules outside the layering: {unknown}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_downward(module: str) -> None:
    """No module imports a layer beside or above its own, or a forbidden one."""
    layer = _layer(module)
    for target in sorted(GRAPH[module]):
        other = _layer(target)
        if other == layer:
            continue
        assert (layer, other) not in FORBIDDEN, (
            f"{module} imports {target}: " + FORBIDDEN[(layer, other)]
        )
        assert RANK[other] < RANK[layer], f"{module} ({layer}) imports {target} ({other})"


def _reachable(start: str) -> set[str]:
    """Every module loaded by importing ``start``: its imports, and each package on the way."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        todo.extend(RUNTIME.get(module, ()))
    return seen


@pytest.mark.parametrize(
    ("start", "never"),
    [
        ("hotswap.client", "hotswap.node"),
        ("hotswap.fleet", "hotswap.node"),
        ("hotswap.cli", "hotswap.node"),
        ("hotswap.node.server", "hotswap.dsl"),
        ("hotswap.node.main", "hotswap.dsl"),
        ("hotswap.node.memory", "hotswap.client"),
    ],
)
def test_what_an_import_can_reach(start: str, never: str) -> None:
    """The static closure of what importing ``start`` can load, imports inside functions
    included: not only what a fresh import loads, but what any call could."""
    reached = {m for m in _reachable(start) if m == never or m.startswith(never + ".")}
    assert not reached, f"importing {start} can load {sorted(reached)}"


LOADED = """
import sys, importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
print(" ".join(sorted(m for m in sys.modules if m.startswith("hotswap"))))
"""


@pytest.mark.parametrize(
    ("imports", "never"),
    [
        (["hotswap.client"], "hotswap.node"),
        (["hotswap.cli", "hotswap.fleet"], "hotswap.node"),
        (["hotswap.node.server", "hotswap.node.main", "hotswap.node.cli"], "hotswap.dsl"),
        (["hotswap.node.main", "hotswap.examples.counter"], "hotswap.client"),
    ],
)
def test_a_fresh_interpreter_loads_only_lower_layers(imports: list[str], never: str) -> None:
    """What really gets loaded, package ``__init__`` files included."""
    out = subprocess.run(
        [sys.executable, "-c", LOADED, *imports], check=True, capture_output=True, text=True
    ).stdout.split()
    assert imports[0] in out
    bad = [m for m in out if m == never or m.startswith(never + ".")]
    assert not bad, f"importing {imports} loaded {bad}"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if _layer(_module_name(p)) in PURE], ids=lambda p: p.name
)
def test_pure_layers_do_no_io(path: Path) -> None:
    """lang, cam, names, protocol, address, code and dsl never import sockets, asyncio or SQLite."""
    roots = {name.split(".")[0] for name in _imports(path)}
    assert not roots & FORBIDDEN_IN_PURE, f"{path.name} imports {roots & FORBIDDEN_IN_PURE}"


def test_the_service_does_no_network_io() -> None:
    """The node's application (service.py) is sans-IO: the asyncio shell is server.py."""
    roots = {name.split(".")[0] for name in _imports(SRC / "node" / "service.py")}
    assert not roots & {"socket", "asyncio", "selectors", "ssl"}
