"""Imports point down: api and worker -> workflows -> activities -> core, and never up or
sideways between routers (docs/architecture.md, Layout)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
#: What each package may not import.
FORBIDDEN = {
    "core": ("api", "worker", "workflows", "activities", "deploy", "chat"),
    "activities": ("api", "worker", "workflows"),
    "workflows": ("api", "worker"),
    "api": ("activities", "worker", "deploy"),
    "chat": ("api", "worker", "workflows", "activities"),
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_lies_below_it(package: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in _imports(path)
        if name.split(".")[0] in FORBIDDEN[package]
    ]
    assert not wrong, wrong


def test_no_router_imports_another() -> None:
    routers = {f"api.routers.{p.stem}" for p in (ROOT / "api" / "routers").glob("*.py")}
    routers |= {"api.openai.router"}
    wrong = []
    for path in [*(ROOT / "api" / "routers").glob("*.py"), ROOT / "api" / "openai" / "router.py"]:
        own = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        wrong += [f"{own} imports {n}" for n in _imports(path) & routers if n != own]
    assert not wrong, wrong
