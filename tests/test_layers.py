"""The layering of DESIGN.md section 1: each layer imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "hotswap"

#: A layer may import layers of a lower rank, and itself; never a layer beside or above it.
RANK = {
    "errors": 0,
    "lang": 1,
    "cam": 2,
    "dsl": 3,
    "protocol": 3,
    "node": 4,
    "client": 5,
    "fleet": 6,
    "cli": 7,
    "examples": 6,
    "__init__": 8,
    "__main__": 8,
}
PURE = {"lang", "cam", "protocol", "dsl"}
FORBIDDEN_IN_PURE = {"socket", "asyncio", "selectors", "ssl", "subprocess"}


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


MODULES = sorted(p for p in SRC.rglob("*.py"))


def test_every_module_belongs_to_a_known_layer() -> None:
    """A new top-level module must be placed in the layering explicitly."""
    unknown = {_layer(p) for p in MODULES} - RANK.keys() - {"py"}
    assert not unknown, f"modules outside the layering: {unknown}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_downward(path: Path) -> None:
    """No module imports a layer beside or above its own."""
    layer = _layer(path)
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] != "hotswap" or len(parts) < 2:
            continue
        target = parts[1]
        if target == layer:
            continue
        assert RANK[target] < RANK[layer], f"{layer} imports {name}"


@pytest.mark.parametrize(
    "path", [p for p in MODULES if _layer(p) in PURE], ids=lambda p: str(p.relative_to(SRC))
)
def test_pure_layers_do_no_io(path: Path) -> None:
    """lang, cam, dsl and protocol never import sockets or asyncio."""
    roots = {name.split(".")[0] for name in _imports(path)}
    assert not roots & FORBIDDEN_IN_PURE, f"{path.name} imports {roots & FORBIDDEN_IN_PURE}"
