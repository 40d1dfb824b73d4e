"""The package is complete and light to start: every import is declared in pyproject.toml,
the core commands need no extra, ``cic-seed --help`` loads no heavy library, and a wheel built
from the tree holds every module, data file and entry point.

Imports are read from the code (lazy and TYPE_CHECKING ones included) and mapped to the
distribution that provides them with ``importlib.metadata.packages_distributions()``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

import click
import pytest

from cic_seeding.cli.app import COMMANDS, cli
from cic_seeding.cli.main import OPTIONAL_MODULES, missing_extra
from tests.code_graph import PACKAGES, import_names, modules, owner
from tests.helpers import ROOT

#: Libraries ``cic-seed --help`` and ``cic-seed CMD --help`` must not load (signing, ABI,
#: services, data generation, progress bars): they are what made the help take seconds.
HEAVY = ("eth_account", "eth_abi", "eth_keyfile", "coincurve", "web3", "celery", "kombu",
         "redis", "psycopg2", "starlette", "uvicorn", "bcrypt", "faker", "requests", "rich")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert found, requirement
    return _norm(found.group(0))


@cache
def project() -> dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return dict(tomllib.load(fh)["project"])


def core() -> set[str]:
    return {_name(r) for r in project()["dependencies"]}  # type: ignore[attr-defined]


def extras() -> dict[str, set[str]]:
    optional: dict[str, list[str]] = project()["optional-dependencies"]  # type: ignore[assignment]
    return {extra: {_name(r) for r in reqs} for extra, reqs in optional.items()}


def runtime_extras() -> set[str]:
    """What any extra but dev adds to the core."""
    return set().union(*(d for e, d in extras().items() if e != "dev")) - core()


@cache
def distributions_of() -> dict[str, set[str]]:
    """Top-level module -> normalised names of the installed distributions providing it."""
    return {m: {_norm(d) for d in ds}
            for m, ds in importlib.metadata.packages_distributions().items()}


def _third_party(top: str) -> bool:
    return top not in sys.stdlib_module_names and top not in {
        "__future__", "cic_seeding", "cic_devnet", "tests", "bench"}


def _imports(path: Path, module_level_only: bool = False) -> Iterator[tuple[str, int]]:
    """(imported module, line) of every import in ``path``; with ``module_level_only`` those
    a module runs when it is imported (not inside a function, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" \
        else module.rpartition(".")[0]

    def walk(node: ast.AST) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef
                                                | ast.Lambda):
                continue
            if (module_level_only and isinstance(child, ast.If)
                    and "TYPE_CHECKING" in ast.unparse(child.test)):
                for stmt in child.orelse:
                    yield from walk_one(stmt)
                continue
            yield from walk_one(child)

    def walk_one(node: ast.AST) -> Iterator[tuple[str, int]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield from import_names(node, package)
        else:
            yield from walk(node)

    yield from walk(tree)


def _files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def undeclared(files: Iterable[Path], allowed: set[str]) -> list[str]:
    """``file:line module (distribution)`` for every import no allowed distribution gives."""
    dists = distributions_of()
    out = []
    for path in files:
        for name, line in _imports(path):
            top = name.split(".")[0]
            if not _third_party(top):
                continue
            provided = dists.get(top)
            if not provided:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {top}, which no installed "
                           "distribution provides")
            elif not provided & allowed:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {top} "
                           f"({', '.join(sorted(provided))}), declared nowhere")
    return sorted(set(out))


def test_every_import_of_the_package_is_declared_in_the_core_or_an_extra() -> None:
    allowed = core() | set().union(*(d for e, d in extras().items() if e != "dev"))
    problems = undeclared(_files(*PACKAGES), allowed)
    assert not problems, "add to pyproject.toml:\n" + "\n".join(problems)


def test_every_import_of_the_tests_and_tools_is_declared() -> None:
    allowed = core() | set().union(*extras().values())
    files = [*_files("tests", "bench", "scripts", "eth", "cic_eth", "cic_meta", "cic_ussd",
                     "examples"),
             *sorted(ROOT.glob("*.py"))]
    problems = undeclared(files, allowed)
    assert not problems, "add to the dev extra:\n" + "\n".join(problems)


#: Declared though no module of ours imports it, and why.
NOT_IMPORTED = {
    "packaging": "kombu's Redis transport imports it; kombu declares it only in its own redis "
                 "extra (a fresh `pip install .[custodial]` lacked it)",
}


#: Imported only by the pytest plugin (cic_devnet.pytest_plugin), which only pytest loads: never
#: missing where it runs, so no command names an extra for it (cli.main.OPTIONAL_MODULES).
PLUGIN_ONLY = {"pytest": "the pytest plugin's fixtures and hooks"}


def test_every_declared_runtime_dependency_is_imported() -> None:
    """No stale declaration (web3 was a core dependency nothing imported)."""
    dists = distributions_of()
    imported = {d for path in _files(*PACKAGES) for name, _ in _imports(path)
                for d in dists.get(name.split(".")[0], ())}
    declared = core() | runtime_extras()
    assert declared - imported == set(NOT_IMPORTED)


def test_the_aggregate_extras_hold_every_service_extra() -> None:
    e = extras()
    services = e["custodial"] | e["meta"] | e["postgres"] | e["ussd"]
    plugin = set(PLUGIN_ONLY)  # the pytest plugin comes with the devnet
    assert e["devnet"] == services | plugin and e["all"] == services | plugin
    assert e["custodial"] | e["meta"] <= e["ussd"]  # the gateway runs beside both
    assert {"pytest", "hypothesis", "ruff", "mypy", "web3", "pip-tools"} <= e["dev"]
    assert "web3" not in core()


def test_the_missing_extra_table_names_the_extras_that_install_each_module() -> None:
    dists = distributions_of()
    e = extras()
    for module, named in OPTIONAL_MODULES.items():
        holding = {extra for extra, ds in e.items()
                   if dists[module] & ds and extra not in ("devnet", "all")}
        assert set(named) == holding, module
    imported = {name.split(".")[0] for path in _files(*PACKAGES) for name, _ in _imports(path)}
    optional = {m for m in imported if _third_party(m) and dists.get(m, set()) & runtime_extras()}
    assert optional == set(OPTIONAL_MODULES) | set(PLUGIN_ONLY)


def test_a_missing_optional_module_is_one_line_naming_the_extra() -> None:
    exc = ModuleNotFoundError("No module named 'celery'", name="celery.app")
    assert missing_extra(exc) == ("error: this needs celery, an optional dependency: pip install "
                                  "'cic-seeding[custodial]' (it comes with [custodial], [ussd], "
                                  "[all])")
    assert missing_extra(ModuleNotFoundError("x", name="nothing_of_ours")) is None
    assert missing_extra(ValueError("celery")) is None


# --- what the core commands load -------------------------------------------------------------


def loaded_at_import(roots: Iterable[str]) -> dict[str, str]:
    """Third-party top-level module -> the module of ours that imports it, over everything
    importing ``roots`` runs (module-level imports, followed through our modules and the
    packages above them)."""
    mods = modules()
    seen: set[str] = set()
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen or module not in mods:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        for name, _ in _imports(mods[module], module_level_only=True):
            ours = owner(name)
            if ours:
                todo.append(ours)
            elif _third_party(top := name.split(".")[0]):
                found.setdefault(top, module)
    return found


def _entry_pointmodules() -> list[str]:
    """The modules of our importer and check plugins (not the pytest plugin: only pytest
    loads it, never a command)."""
    groups: dict[str, dict[str, str]] = project()["entry-points"]  # type: ignore[assignment]
    return sorted({v.split(":")[0] for name, group in groups.items()
                   if name.startswith("cic_seeding.") for v in group.values()})


#: What the core commands import when they run: every command module, every importer and
#: check plugin (verify loads all checks, `importers` every importer), and the devnet parts
#: `devnet up` and `demo` run in-process (the services they start are separate processes).
CORE_ROOTS = (*sorted({m for m, _ in COMMANDS.values()}), "cic_seeding.cli.main",
              *_entry_pointmodules(), "cic_devnet.demo", "cic_devnet.devnet",
              "cic_devnet.anvil", "cic_devnet.deploy", "cic_devnet.meta.process",
              "cic_devnet.custodial.process", "cic_devnet.ussd.process")


def _extras_among(found: dict[str, str]) -> list[str]:
    dists = distributions_of()
    optional = runtime_extras()
    return sorted(f"{module} (imported by {by})" for module, by in found.items()
                  if dists.get(module, set()) & optional)


def test_generate_and_validate_import_nothing_from_an_extra() -> None:
    found = loaded_at_import(["cic_seeding.generate.generator", "cic_seeding.generate.validate",
                              "cic_seeding.cli.generate_cmd"])
    assert _extras_among(found) == []
    assert {"eth_account", "eth_abi", "web3", "celery"}.isdisjoint(found)


def test_core_commands_import_nothing_from_an_extra_when_loaded() -> None:
    assert _extras_among(loaded_at_import(CORE_ROOTS)) == []


#: Makes every module of an extra unimportable, as in an install without extras.
_WITHOUT_EXTRAS = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class NoExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
sys.meta_path.insert(0, NoExtras())
import importlib.util
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: (
    None if name.split(".")[0] in BLOCKED else _find_spec(name, package))
"""


def test_core_commands_run_without_any_extra(tmp_path: Path) -> None:
    script = _WITHOUT_EXTRAS + f"""
import importlib
for module in {list(CORE_ROOTS)!r}:
    importlib.import_module(module)
from cic_seeding.cli.main import main, missing_extra
data = sys.argv[2]
assert main(["generate", "-q", "--dir", data, "--seed", "7", "25"]) == 0
assert main(["validate", data]) == 0
assert main(["importers"]) == 0
assert main(["verify", "--list-verifications"]) == 0
assert main(["config", "show"]) == 0
import os
assert main(["devnet", "up", "--dir", data + "-devnet", "--meta"]) == 2  # before anvil starts
assert not os.path.exists(os.path.join(data + "-devnet", "devnet.json"))
from cic_seeding.ussd.pins import seeded_pin
seeded_pin(7, 1)
try:
    from cic_seeding.ussd.pins import hash_pin
    hash_pin("1234")
except ModuleNotFoundError as exc:
    print(missing_extra(exc))
"""
    done = subprocess.run([sys.executable, "-c", script, ",".join(OPTIONAL_MODULES),
                           str(tmp_path / "data")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pip install 'cic-seeding[ussd]'" in done.stdout
    assert ("error: devnet up --meta needs starlette, uvicorn, not installed; pip install "
            "'cic-seeding[meta]' (or [all])") in done.stderr


# --- cic-seed --help -------------------------------------------------------------------------


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _loaded_by(argv: list[str]) -> tuple[set[str], str]:
    script = ("import sys\nfrom cic_seeding.cli.main import main\n"
              f"rc = main({argv!r})\n"
              "print('\\n' + ' '.join(sorted(sys.modules)))\nsys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=_env(), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    help_text, _, modules = done.stdout.rstrip("\n").rpartition("\n")
    return set(modules.split()), help_text


@pytest.mark.parametrize("command", [[], *([name] for name in sorted(COMMANDS))],
                         ids=lambda c: " ".join(["cic-seed", *c, "--help"]))
def test_help_loads_no_heavy_library(command: list[str]) -> None:
    loaded, help_text = _loaded_by([*command, "--help"])
    assert "Usage: cic-seed" in help_text
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"cic-seed {' '.join(command)} --help imports {heavy}"
    if not command:  # the command list comes from COMMANDS, no command module is imported
        assert not {m for m, _ in COMMANDS.values()} & loaded


def test_the_lazy_command_list_is_the_eager_one() -> None:
    """Each command is where COMMANDS says, under its summary, and no command of any module
    of cic_seeding/cli is missing from it."""
    for path in sorted((ROOT / "cic_seeding" / "cli").glob("*.py")):
        importlib.import_module(f"cic_seeding.cli.{path.stem}")
    assert set(cli.commands) == set(COMMANDS)
    for name, (module, summary) in COMMANDS.items():
        command = cli.commands[name]
        assert command.callback is not None
        assert sys.modules[command.callback.__module__].__name__ == module
        for limit in (30, 45, 60, 80, 120, 200):
            assert click.utils.make_default_short_help(summary, limit) == \
                command.get_short_help_str(limit), (name, limit)
    _, lazy = _loaded_by(["--help"])
    with click.Context(cli, info_name="cic-seed", **cli.context_settings) as ctx:
        eager = cli.get_help(ctx)
    assert lazy.strip() == eager.strip()


# --- the wheel -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built (``pip wheel --no-deps``) from a copy of the tree's package sources."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    for path in _package_files():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes((ROOT / path).read_bytes())
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("cic_seeding-*.whl")
    return built


def _package_files() -> list[Path]:
    """The files of the packages git knows (tracked, or new and not ignored)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                             *PACKAGES], cwd=ROOT, capture_output=True, text=True, check=True)
    return sorted(Path(p) for p in listed.stdout.split() if (ROOT / p).is_file())


def test_the_wheel_holds_every_module_and_data_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    ours = {str(p) for p in _package_files()}
    assert ours - names == set(), "missing from the wheel"
    extra = {n for n in names - ours if ".dist-info/" not in n}
    assert extra == set(), "in the wheel but not in the tree"


def test_the_wheel_declares_the_entry_points_and_dependencies(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        info = next(n.rpartition("/")[0] for n in zf.namelist() if n.endswith("/METADATA"))
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = zf.read(f"{info}/METADATA").decode()
    groups: dict[str, dict[str, str]] = {}
    group = ""
    for line in entry_points.splitlines():
        if line.startswith("["):
            group = line.strip("[]")
        elif "=" in line:
            key, _, value = line.partition("=")
            groups.setdefault(group, {})[key.strip()] = value.strip()
    assert groups["console_scripts"] == {"cic-seed": "cic_seeding.cli.main:main"}
    declared: dict[str, dict[str, str]] = project()["entry-points"]  # type: ignore[assignment]
    for name, points in declared.items():
        assert groups[name] == points
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    assert {_name(r) for r in requires if "extra ==" not in r} == core()
    for extra, dists in extras().items():
        assert {_name(r) for r in requires if f"extra == \"{extra}\"" in r} == dists, extra


def test_a_service_extra_already_loaded_counts_as_installed() -> None:
    """kombu replaces its module object with one without ``__spec__``: ``find_spec`` then
    raises, and `devnet up --ussd` failed in a fresh venv."""
    import kombu  # noqa: F401

    from cic_devnet._server import require_extra

    require_extra("ussd", "the USSD gateway")  # no error
