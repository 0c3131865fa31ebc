"""The layering as rules a change cannot break quietly.

The packages depend one way: `api` wires everything; the optimizer's use cases talk to stores
through the Protocols in `optimizer.ports`; `campaign_db` implements them and is the only package
that talks SQL; `optimizer.core` and `offline_eval` are pure. See docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("optimizer", "campaign_db", "api", "offline_eval")
MAX_CLASS_LINES = 200


@dataclass(frozen=True)
class Import:
    module: str
    target: str
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> Iterator[tuple[str, Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            yield _module_name(path), path, ast.parse(path.read_text(encoding="utf-8"))


SOURCES = list(_sources())
OURS = {name for name, _, _ in SOURCES}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports() -> list[Import]:
    found = []
    for module, path, tree in SOURCES:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [Import(module, alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, path.name == "__init__.py", node)
                found.append(Import(module, target, node.lineno))
                found += [
                    Import(module, f"{target}.{alias.name}", node.lineno)
                    for alias in node.names
                    if f"{target}.{alias.name}" in OURS
                ]
    return found


IMPORTS = _imports()


def _within(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + ".")


def _violations(importer: str, allowed: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if _within(i.module, importer)
        and any(_within(i.target, f) for f in forbidden)
        and not any(_within(i.module, a) for a in allowed)
    )


def test_only_campaign_db_talks_sql() -> None:
    assert _violations("", ("campaign_db",), ("sqlalchemy", "sqlmodel", "psycopg", "sqlite3")) == []


def test_the_cockpit_pages_reach_storage_only_through_the_container() -> None:
    """The /ui pages take their stores from the container, as the JSON routes do."""
    assert _violations("api.ui", (), ("campaign_db",)) == []


def test_the_optimizer_reaches_storage_only_through_its_ports() -> None:
    assert _violations("optimizer", (), ("campaign_db",)) == []


def test_campaign_db_knows_only_the_core_and_the_ports_it_implements() -> None:
    optimizer_beyond_core = tuple(
        name
        for name in OURS
        if _within(name, "optimizer")
        and not _within(name, "optimizer.core")
        and not _within(name, "optimizer.ports")
        and name != "optimizer"
    )
    beyond = ("api", "offline_eval", *optimizer_beyond_core)
    assert _violations("campaign_db", (), beyond) == []


@pytest.mark.parametrize("pure", ["optimizer.core", "offline_eval"])
def test_pure_packages_import_nothing_of_ours_outside_themselves(pure: str) -> None:
    others = tuple(p for p in (*PACKAGES, *sorted(OURS)) if not _within(p, pure))
    others = tuple(o for o in others if not _within(pure, o))
    assert _violations(pure, (), others) == []


def test_one_module_talks_to_vowpal_wabbit_and_one_package_to_mlflow() -> None:
    assert _violations("", ("optimizer.vw",), ("vowpal_wabbit_next",)) == []
    assert _violations("", ("optimizer.registry",), ("mlflow",)) == []


def _loose_any(tree: ast.Module) -> list[int]:
    """Lines where `Any` stands for a value; as a numpy array's shape or dtype it is fine."""
    arrays: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr in ("ndarray", "dtype")
        ):
            arrays.update(id(inner) for inner in ast.walk(node.slice))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id == "Any" and id(node) not in arrays
    ]


def test_ports_speak_in_typed_values() -> None:
    """What crosses a port is a dataclass or a core value, never `Any` or an ORM row; a JSON
    document is a `JsonValue` mapping."""
    loose = [
        f"{module}:{line}"
        for module, _, tree in SOURCES
        if _within(module, "optimizer.ports")
        for line in _loose_any(tree)
        if not _is_import_line(tree, line)
    ]
    assert loose == []


def _is_import_line(tree: ast.Module, line: int) -> bool:
    return any(
        isinstance(node, ast.ImportFrom) and node.lineno <= line <= (node.end_lineno or line)
        for node in tree.body
    )


def _cycles() -> list[list[str]]:
    graph: dict[str, set[str]] = {name: set() for name in OURS}
    for i in IMPORTS:
        if i.target in OURS and i.target != i.module:
            graph[i.module].add(i.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _is_package_parent(a: str, b: str) -> bool:
    return _within(b, a) or _within(a, b)


def test_no_import_cycles() -> None:
    """A package importing its own submodules (an `__init__` that re-exports) is not a cycle;
    any other loop, lazy imports included, is."""
    cycles = [
        c
        for c in _cycles()
        if not all(_is_package_parent(c[0], m) or _is_package_parent(m, c[0]) for m in c)
    ]
    assert cycles == []


def test_no_class_is_over_two_hundred_lines() -> None:
    long = [
        f"{module}.{node.name}: {(node.end_lineno or node.lineno) - node.lineno + 1} lines"
        for module, _, tree in SOURCES
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_CLASS_LINES
    ]
    assert long == []


def test_every_package_directory_is_a_package() -> None:
    """A directory without `__init__.py` imports in a checkout but is left out of a wheel."""
    missing = [
        str(d.relative_to(ROOT))
        for package in PACKAGES
        for d in [ROOT / package, *(ROOT / package).rglob("*")]
        if d.is_dir()
        and any(d.glob("*.py"))
        and "migrations" not in d.parts
        and not (d / "__init__.py").exists()
    ]
    assert missing == []
