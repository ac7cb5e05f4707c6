"""The sans-IO rule of docs/design.md, kept by a test: the codec, protocol and http layers never
import I/O, threads or clocks, and no layer imports from a layer above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cocaine_http"
SANS_IO = ("codec", "protocol", "http")
FORBIDDEN = {"asyncio", "socket", "threading", "selectors", "time", "concurrent", "uvloop"}
#: Layer order of docs/design.md, bottom first; a module may import only its own layer or lower.
#: Every module of the package belongs to one (the package's lazy `__init__` and `__main__` aside).
LAYERS = ["errors", "config", "codec", "protocol", "http", "aio", "services", "adapters", "proxy",
          "dev", "cli"]
FACADES = {"__init__.py", "__main__.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = path.relative_to(PACKAGE).parts[: -node.level]
                module = ".".join(("cocaine_http", *base, *(node.module or "").split(".")))
                names.add(module.rstrip("."))
            elif node.module:
                names.add(node.module)
    return names


def _sans_io_modules() -> list[Path]:
    return sorted(p for layer in SANS_IO for p in (PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("path", _sans_io_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_sans_io_module_does_no_io(path: Path) -> None:
    """A sans-IO module imports nothing that does I/O, threads or reads the clock."""
    roots = {name.split(".")[0] for name in _imports(path)}

    assert not roots & FORBIDDEN, f"{path.name} imports {sorted(roots & FORBIDDEN)}"


def _layer_of(parts: tuple[str, ...]) -> str | None:
    head = parts[0].removesuffix(".py") if parts else ""
    return head if head in LAYERS else None


def _layered_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if _layer_of(p.relative_to(PACKAGE).parts))


@pytest.mark.parametrize("path", _layered_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_lower_layers(path: Path) -> None:
    """Dependencies point down only (docs/design.md)."""
    own = _layer_of(path.relative_to(PACKAGE).parts)
    assert own is not None
    upward = []
    for name in _imports(path):
        parts = name.split(".")
        if parts[0] != "cocaine_http" or len(parts) < 2:
            continue
        other = _layer_of(tuple(parts[1:]))
        if other is not None and LAYERS.index(other) > LAYERS.index(own):
            upward.append(name)

    assert not upward, f"{path.relative_to(PACKAGE)} imports upper layers: {upward}"


def test_every_module_has_a_layer() -> None:
    """A new top-level module or package is placed in the layer order, not left outside it."""
    outside = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.glob("*")
        if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
        and p.name not in FACADES
        and _layer_of((p.name,)) is None
    ]

    assert not outside, f"modules outside the layer order: {outside}"
