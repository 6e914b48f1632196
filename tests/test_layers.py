"""Imports in twisted_patch/ run one way: down the layers of docs/architecture.rst.

Every module has a rank; a module may import (at module level or inside a
function) only modules of a lower rank.  Modules of the same rank never
import each other (the ways to turn the protection on are independent of each
other).  A new module must be given a rank here, so that its place is decided.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "twisted_patch"

#: rank of every module, lowest first (the layers, bottom up)
RANKS: dict[str, int] = {
    # the C core's binding
    "twisted_patch._native": 0,
    # messages, addresses, owner lookup, sockets
    "twisted_patch.errors": 1,
    "twisted_patch._address": 2,
    "twisted_patch.owner": 3,
    "twisted_patch._sockets": 4,
    # port classes and what they are made of
    "twisted_patch.port.guards": 5,
    "twisted_patch.port.selfprobe": 6,
    "twisted_patch.port.selfcheck": 6,
    "twisted_patch.port.listening": 7,
    "twisted_patch.port.tcp": 8,
    "twisted_patch.port.iocp": 8,
    "twisted_patch.port.dropin": 8,
    "twisted_patch.port": 9,
    "twisted_patch.retry": 10,
    # the ways to turn it on: never import each other
    "twisted_patch.endpoint": 11,
    "twisted_patch.reactor": 11,
    "twisted_patch.iocpreactor": 11,
    "twisted_patch.patch": 11,
    "twisted_patch.tahoe": 11,
    "twisted_patch.tub": 11,
    # the package's lazy front door and Twisted's plugin objects
    "twisted_patch": 12,
    "twisted_patch._plugins": 12,
    # the command line
    "twisted_patch.cli.attacker_child": 13,
    "twisted_patch.cli.attacks": 14,
    "twisted_patch.cli.attack_table": 15,
    "twisted_patch.cli.who": 15,
    "twisted_patch.cli.verify": 15,
    "twisted_patch.cli.plugin_cache": 15,
    "twisted_patch.cli": 16,
    "twisted_patch.__main__": 17,
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, name: str, known: set[str]) -> set[str]:
    """The twisted_patch modules ``source`` (module ``name``) imports, anywhere in it."""
    found: set[str] = set()
    package = name if name in known and _is_package(name, known) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(_closest(alias.name, known))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else _closest(base, known))
    return {m for m in found if m and m.startswith("twisted_patch") and m != name}


def _is_package(name: str, known: set[str]) -> bool:
    return any(other.startswith(name + ".") for other in known)


def _closest(name: str, known: set[str]) -> str:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def violations(sources: dict[str, str], ranks: dict[str, int]) -> list[str]:
    known = set(ranks) | set(sources)
    problems = [f"{name} has no rank in tests/test_layers.py" for name in sources
                if name not in ranks]
    for name, source in sorted(sources.items()):
        if name not in ranks:
            continue
        for target in sorted(imports_of(source, name, known)):
            if target not in ranks:
                continue
            if ranks[target] >= ranks[name]:
                kind = "a sibling" if ranks[target] == ranks[name] else "an upper layer"
                problems.append(f"{name} (rank {ranks[name]}) imports {kind}: {target} "
                                f"(rank {ranks[target]})")
    return problems


def package_sources() -> dict[str, str]:
    sources = {module_name(p, PACKAGE): p.read_text(encoding="utf-8")
               for p in PACKAGE.rglob("*.py")}
    sources.setdefault("twisted_patch._native", "")  # the C extension
    return sources


def test_imports_run_down_the_layers() -> None:
    assert violations(package_sources(), RANKS) == []


def test_every_ranked_module_exists() -> None:
    assert sorted(set(RANKS) - set(package_sources())) == []


@pytest.mark.parametrize(
    "source,expected",
    [
        ("from twisted_patch.endpoint import listen_exclusive\n", "imports an upper layer"),
        ("def f():\n    from twisted_patch import cli\n", "imports an upper layer"),
        ("from twisted_patch.port import tcp\n", "imports an upper layer"),
        ("import twisted_patch.reactor\n", "imports a sibling"),
    ],
)
def test_the_check_finds_an_upward_import(source: str, expected: str) -> None:
    """The checker itself can fail: an upward or sideways import is reported."""
    sources = package_sources()
    victim = "twisted_patch.owner" if "reactor" not in source else "twisted_patch.patch"
    sources[victim] = sources[victim] + "\n" + source
    found = violations(sources, RANKS)
    assert any(victim in p and expected in p for p in found), found


def test_a_module_without_a_rank_is_reported() -> None:
    sources = {**package_sources(), "twisted_patch.newthing": ""}
    assert "twisted_patch.newthing has no rank in tests/test_layers.py" in violations(
        sources, RANKS)
