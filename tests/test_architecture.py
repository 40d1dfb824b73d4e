"""The import rules of ARCHITECTURE.md, read from the code (lazy and TYPE_CHECKING imports too).

Data flows one way -- data directory -> importers -> chain and services -> sync -> verify --
and imports point down the same way. A failure names the module and the import that breaks a
rule; fix the design (move the shared piece down a layer), not the test.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from tests.code_graph import import_names, modules, owner
from tests.helpers import ROOT

#: The library's rooms from the ground floor up. A room may import rooms of lower floors and
#: itself; two rooms on one floor do not import each other.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("cic_seeding", "cic_seeding.errors", "cic_seeding.log", "cic_seeding.units",
     "cic_seeding.plugins"),
    ("cic_seeding.remote",),
    ("cic_seeding.config",),
    ("cic_seeding.records",),
    ("cic_seeding.datadir", "cic_seeding.state"),
    ("cic_seeding.generate",),
    ("cic_seeding.chain",),
    ("cic_seeding.outbox",),
    ("cic_seeding.meta", "cic_seeding.ussd", "cic_seeding.custodial"),
    ("cic_seeding.importers",),
    ("cic_seeding.sync", "cic_seeding.traffic"),
    ("cic_seeding.verify",),
    ("cic_seeding.doctor", "cic_seeding.repair"),
    ("cic_seeding.cli",),
)

#: The one module that turns a devnet directory into settings.
SETTINGS_LOADER = "cic_seeding.config"


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported name, line) for every import statement in the module, wherever it stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        yield from import_names(node, package)


@cache
def graph() -> dict[str, dict[str, int]]:
    """module -> {module of ours it imports: line of the first such import}."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for module, path in modules().items():
        for name, line in _imported(module, path):
            target = owner(name)
            if target and target != module:
                out[module].setdefault(target, line)
    return out


def room(module: str) -> str:
    """``cic_seeding.sync.payer`` -> ``cic_seeding.sync``; top-level modules are rooms."""
    return ".".join(module.split(".")[:2])


def floor(module: str) -> int:
    for level, rooms in enumerate(FLOORS):
        if room(module) in rooms:
            return level
    raise AssertionError(f"{room(module)} is on no floor of FLOORS; add it where it belongs")


def _library(module: str) -> bool:
    return module.startswith("cic_seeding")


def _cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), except a package whose
    ``__init__`` re-exports its own submodules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            package = min(group, key=len)
            if len(group) > 1 and not all(m.startswith(package) for m in group):
                found.append(sorted(group))

    for module in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if module not in index:
            visit(module)
    return found


def _where(a: str, b: str) -> str:
    return f"{modules()[a].relative_to(ROOT)}:{graph()[a][b]} imports {b}"


def test_no_import_circles() -> None:
    assert _cycles(graph()) == []


def test_library_imports_only_downward() -> None:
    wrong = [_where(a, b) for a, targets in graph().items() if _library(a)
             for b in targets if _library(b) and room(a) != room(b) and floor(b) >= floor(a)]
    assert wrong == [], "an import that runs up or sideways:\n" + "\n".join(wrong)


def test_no_module_imports_another_package_s_private_module() -> None:
    def private(module: str) -> bool:
        return any(p.startswith("_") and not p.startswith("__") for p in module.split(".")[1:])

    wrong = [_where(a, b) for a, targets in graph().items() for b in targets
             if private(b) and not a.startswith(b.rpartition(".")[0] + ".")
             and a.rpartition(".")[0] != b.rpartition(".")[0]]
    assert wrong == [], "\n".join(wrong)


def test_the_library_does_not_import_the_devnet_services() -> None:
    wrong = [_where(a, b) for a, targets in graph().items()
             if _library(a) and room(a) != "cic_seeding.cli"
             for b in targets if b.startswith("cic_devnet")]
    assert wrong == [], "\n".join(wrong)


def test_only_the_cli_draws_progress() -> None:
    """rich (bars on a terminal) is the command line's: the library reports progress through
    callbacks (``progress(done, total)``) and never draws."""
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for module, path in modules().items()
             if _library(module) and room(module) != "cic_seeding.cli"
             for name, line in _imported(module, path) if name.split(".")[0] == "rich"]
    assert wrong == [], "\n".join(wrong)
    drawing = {name.split(".")[0] for name, _ in _imported(
        "cic_seeding.cli.progress", modules()["cic_seeding.cli.progress"])}
    assert "rich" in drawing  # the rule reads real imports (lazy ones included)


def test_only_the_settings_loader_reads_the_devnet_directory() -> None:
    readers = []
    for module, path in modules().items():
        if not _library(module) or module == SETTINGS_LOADER or room(module) == "cic_seeding.cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Constant) and node.value == "devnet.json") or \
                    (isinstance(node, ast.Attribute) and node.attr == "devnet_dir") or \
                    (isinstance(node, ast.Name) and node.id == "read_devnet"):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                break
    assert readers == [], "devnet.json read outside the settings loader:\n" + "\n".join(readers)


def test_the_reader_sees_lazy_imports_and_circles() -> None:
    """The rules rest on these: an import inside a function counts, a circle is found, and a
    package re-exporting its own submodules is not a circle."""
    assert "cic_seeding.sync.run" in graph()["cic_seeding.cli.import_cmd"]  # inside a command
    assert _cycles({"a.x": {"a.y": 1}, "a.y": {"b.z": 1}, "b.z": {"a.x": 1}}) == [
        ["a.x", "a.y", "b.z"]]
    assert _cycles({"p": {"p.m": 1}, "p.m": {"p": 1}}) == []
