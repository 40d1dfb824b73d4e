"""The pytest plugin (cic_devnet/pytest_plugin.py) and the examples a user copies (examples/).

Each run here is a separate pytest process in a temporary "user project", with the plugin
found the way an installed cic-seeding offers it: through the ``pytest11`` entry point that
pyproject.toml declares (a dist-info carrying it is put on the path; tests/test_packaging.py
checks that the wheel carries the same). The CI files are read with PyYAML and their shell
steps run as written, in order, except the two install lines (``pip install`` of cic-seeding,
``npm install`` of anvil), which this checkout stands in for.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.helpers import ROOT

EXAMPLES = ROOT / "examples"
PLUGIN = "cic_devnet.pytest_plugin"
FIXTURES = {"cic_devnet", "cic_seed"}


def _pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory holding a dist-info with the declared ``pytest11`` entry points, as an
    install of the package writes it."""
    points = _pyproject()["project"]["entry-points"]["pytest11"]
    site = tmp_path_factory.mktemp("site")
    info = site / "cic_seeding_plugin_probe-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cic-seeding-plugin-probe\n"
                                   "Version: 0\n")
    (info / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    return site


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    return {**env, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), **extra}


def _project(tmp_path: Path) -> Path:
    """A user's project: its tests (the example) and anvil from npm (node_modules)."""
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_example.py").write_bytes(
        (EXAMPLES / "test_example.py").read_bytes())
    if (ROOT / "node_modules").is_dir():
        (project / "node_modules").symlink_to(ROOT / "node_modules")
    return project


def _cases(junit: Path) -> dict[str, str]:
    """Test name -> passed / failed / error / skipped, from pytest's JUnit XML."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[case.get("name", "")] = kinds[0] if kinds else "passed"
    return out


def _devnets(directory: Path) -> int:
    """How many devnets were started under ``directory`` (each wrote its devnet.json)."""
    return sum(1 for _ in directory.rglob("devnet.json"))


def _anvils_running_in(project: Path) -> list[int]:
    """Process ids of the anvils still running that were started from ``project`` (their
    working directory: devnets started there, by the CLI or by the plugin)."""
    found = []
    for proc in psutil.process_iter(["name", "cwd", "status"]):
        if (str(proc.info["name"] or "").startswith("anvil") and proc.info["cwd"] == str(project)
                and proc.info["status"] != psutil.STATUS_ZOMBIE):
            found.append(proc.pid)
    return found


# --- the plugin ------------------------------------------------------------------------------


def test_the_entry_point_names_the_plugin_module() -> None:
    """Named by its module, the entry point and ``-p cic_devnet.pytest_plugin`` load it once."""
    assert _pyproject()["project"]["entry-points"]["pytest11"] == {PLUGIN: PLUGIN}


def test_loading_the_plugin_imports_only_pytest_and_the_standard_library() -> None:
    """pytest loads the plugin for every run in the environment: it must cost nothing."""
    script = ("import sys, pytest\nbefore = set(sys.modules)\n"
              f"import {PLUGIN}\n"
              "print(' '.join(sorted(set(sys.modules) - before)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert {"cic_devnet", PLUGIN} <= loaded
    foreign = sorted(m for m in loaded - {"cic_devnet", PLUGIN}
                     if m.split(".")[0] not in sys.stdlib_module_names)
    assert foreign == []


def _fixture_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and any(
                "fixture" in ast.unparse(d) for d in node.decorator_list):
            names.add(node.name)
    return names


def test_the_suite_defines_no_fixture_of_the_plugin_s_names() -> None:
    """With the package installed the plugin loads into this suite too: no fixture of ours
    may shadow (or be shadowed by) one of its fixtures."""
    assert _fixture_names(ROOT / "cic_devnet" / "pytest_plugin.py") == FIXTURES
    ours = {name: path for path in (ROOT / "tests").rglob("*.py")
            for name in _fixture_names(path)}
    assert ours.keys() & FIXTURES == set()


def test_the_suite_collects_with_the_plugin_loaded(installed: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", PLUGIN,
                           "--collect-only", "-q", "tests/test_architecture.py",
                           "tests/test_packaging.py", "--fixtures"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=_env(installed))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cic_devnet [session scope] -- cic_devnet/pytest_plugin.py" in done.stdout
    assert "cic_seed -- cic_devnet/pytest_plugin.py" in done.stdout


#: A user's tests with every ini option changed, and the misuses the plugin reports.
OPTIONS_TESTS = '''
import pytest

def test_the_options_shape_the_devnet(cic_devnet, cic_seed):
    token = cic_devnet.info["token"]
    assert (token["symbol"], token["decimals"]) == ("SRF", 18)
    assert cic_devnet.info["faucet_amount"] == 0 and "meta" in cic_devnet.info
    users = cic_seed(4, seed=3, settings={"gas_gift": 10**15})
    assert users.metadata is not None and users.metadata.ok
    assert users.verified.checks["metadata"].ok == 4
    assert users.verified.checks["balance"].ok == 4
    from cic_seeding.chain.rpc import JsonRpc
    rpc = JsonRpc(cic_devnet.rpc_url)
    assert {int(rpc.call("eth_getBalance", [a, "latest"]), 16) for a in users.addresses} == {
        10**15}
    assert users.verify(include=("gas",)).checks["gas"].ok == 4

def test_automine_off_leaves_mining_to_the_caller(cic_devnet):
    from cic_seeding.chain.rpc import JsonRpc
    assert JsonRpc(cic_devnet.rpc_url).call("anvil_getAutomine") is False

def test_one_seed_twice_in_a_test(cic_seed):
    cic_seed(2, seed=5)
    cic_seed(2, seed=5)

@pytest.mark.cic_devnet
def test_marked_by_hand():
    pass

def test_without_the_devnet():
    pass
'''


def test_ini_options_shape_the_devnet_and_misuse_is_one_line(installed: Path,
                                                             tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "tests" / "test_example.py").unlink()
    (project / "tests" / "test_options.py").write_text(OPTIONS_TESTS)
    (project / "pytest.ini").write_text(
        "[pytest]\ncic_devnet_meta = true\ncic_devnet_token_symbol = SRF\n"
        "cic_devnet_decimals = 18\ncic_devnet_faucet_amount = 0\ncic_devnet_automine = false\n")
    basetemp = tmp_path / "basetemp"
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           f"--basetemp={basetemp}", "--junitxml=out.xml", "-m", "cic_devnet"],
                          cwd=project, capture_output=True, text=True, timeout=600,
                          env=_env(installed))
    assert _cases(project / "out.xml") == {
        "test_the_options_shape_the_devnet": "passed",
        "test_automine_off_leaves_mining_to_the_caller": "passed",
        "test_one_seed_twice_in_a_test": "failure",
        "test_marked_by_hand": "passed"}, done.stdout + done.stderr
    assert ("cic_seed: seed 5 was already seeded in this test; give each call its own seed"
            in done.stdout)
    assert _devnets(basetemp) == 1 and _anvils_running_in(project) == []

    (project / "pytest.ini").write_text("[pytest]\ncic_devnet_decimals = six\n")
    bad = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                          "-k", "options_shape"], cwd=project, capture_output=True, text=True,
                         timeout=300, env=_env(installed))
    assert bad.returncode == pytest.ExitCode.USAGE_ERROR
    assert ("ERROR: ini option cic_devnet_decimals must be a whole number, got 'six'"
            in bad.stderr)


# --- the examples ----------------------------------------------------------------------------


def _example_tests() -> set[str]:
    tree = ast.parse((EXAMPLES / "test_example.py").read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")}


#: The install lines of both CI files; the test stands in for them.
INSTALLS = ('python -m pip install "$CIC_SEEDING"', 'npm install --no-save "$ANVIL"')


@dataclass
class Step:
    name: str
    script: str
    env: dict[str, str]
    always: bool = False  # runs after an earlier step failed too


@dataclass
class CiFile:
    steps: list[Step]
    env: dict[str, str]
    reports: list[str]  # files the job publishes


def _github(doc: dict[str, Any]) -> CiFile:
    (job,) = doc["jobs"].values()
    env = {**doc.get("env", {}), **job.get("env", {})}
    steps = [Step(s.get("name", ""), s["run"], {**env, **s.get("env", {})},
                  s.get("if") == "always()") for s in job["steps"] if "run" in s]
    reports = []
    for step in job["steps"]:
        if str(step.get("uses", "")).startswith("actions/upload-artifact@"):
            reports += step["with"]["path"].split()
    return CiFile(steps, env, reports)


def _gitlab(doc: dict[str, Any]) -> CiFile:
    job = doc["cic-network"]
    env = {**doc.get("variables", {}), **job.get("variables", {})}
    script = [*job.get("before_script", []), *job["script"]]
    steps = [Step("script", "\n".join(script), env),
             Step("after_script", "\n".join(job.get("after_script", [])), env, True)]
    artifacts = job["artifacts"]
    assert artifacts["when"] == "always"
    assert set(artifacts["reports"]["junit"]) <= set(artifacts["paths"])
    return CiFile(steps, env, list(artifacts["paths"]))


def _without_installs(script: str, seen: list[str]) -> str:
    kept = []
    for line in script.splitlines():
        if line.strip().startswith(("pip ", "python -m pip ", "npm ")):
            seen.append(line.strip())
        else:
            kept.append(line)
    return "\n".join(kept)


def _tools(directory: Path) -> Path:
    """``python`` and ``cic-seed`` as the install would put them on PATH: this interpreter
    and this checkout."""
    directory.mkdir()
    for name, command in (("python", f'exec "{sys.executable}" "$@"'),
                          ("cic-seed", f'exec "{sys.executable}" -m cic_seeding.cli.main "$@"')):
        (directory / name).write_text(f"#!/bin/sh\n{command}\n")
        (directory / name).chmod(0o755)
    return directory


@pytest.mark.parametrize(("name", "read"), [("github-actions.yml", _github),
                                             ("gitlab-ci.yml", _gitlab)])
def test_a_ci_example_runs_as_written(name: str, read: Any, installed: Path,
                                      tmp_path: Path) -> None:
    ci = read(yaml.safe_load((EXAMPLES / name).read_text()))
    anvil = json.loads((ROOT / "package.json").read_text())["dependencies"]["@foundry-rs/anvil"]
    assert ci.env["CIC_SEEDING"] == "cic-seeding[devnet]"
    assert ci.env["ANVIL"] == f"@foundry-rs/anvil@{anvil}"  # the anvil the project tests with

    project = _project(tmp_path)
    basetemp = tmp_path / "basetemp"
    bin_dir = _tools(tmp_path / "bin")
    installs: list[str] = []
    outcomes: dict[str, int] = {}
    try:
        for step in ci.steps:
            if any(rc != 0 for rc in outcomes.values()) and not step.always:
                continue
            env = _env(installed, **{k: str(v) for k, v in step.env.items()},
                       PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                       PYTEST_ADDOPTS=f"-p no:cacheprovider --basetemp={basetemp}")
            done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                                   _without_installs(step.script, installs)],
                                  cwd=project, env=env, capture_output=True, text=True,
                                  timeout=900)
            outcomes[step.name] = done.returncode
            assert done.returncode == 0, f"{name}: {step.name}:\n{done.stdout}{done.stderr}"
    finally:
        if (project / "cic" / "devnet" / "devnet.json").is_file():
            from cic_devnet.devnet import devnet_down

            devnet_down(project / "cic" / "devnet")  # a failed run's devnet
    assert tuple(installs) == INSTALLS
    assert outcomes and set(outcomes.values()) == {0}

    for report in ci.reports:
        assert (project / report).is_file(), f"{name} publishes {report}, which was not written"
    verify = ET.parse(project / "cic" / "verify.xml").getroot()
    props = {p.get("name"): p.get("value") for p in verify.iter("property")}
    assert props["users"] == ci.env["USERS"] == "50"
    assert (verify.get("failures"), verify.get("skipped")) == ("0", "0")
    assert {c.get("name") for c in verify.iter("testcase")} >= {"balance", "metadata"}
    assert _cases(project / "cic" / "pytest.xml") == dict.fromkeys(_example_tests(), "passed")
    # the job's devnet and the plugin's, both stopped
    assert (_devnets(project / "cic"), _devnets(basetemp)) == (1, 1)
    assert _anvils_running_in(project) == []
