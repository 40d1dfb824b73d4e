"""The importer registry against real entry points: a throwaway distribution on ``sys.path``
(a ``*.dist-info`` folder with ``METADATA`` and ``entry_points.txt``, plus its module), found
by :func:`importlib.metadata.entry_points` as any installed plugin is."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cic_seeding.errors import ImporterError
from cic_seeding.importers import GROUP, get_importer, importer_names
from tests.helpers import run_cli, the_error_line

MODULE = "cic_conformance_plugin"
REFUSED = f"importer 'halfdone' ({MODULE}:HalfDone) does not implement submit, outcomes"
HINT = (f"{MODULE}.HalfDone must define every abstract method of "
        "cic_seeding.importers.base.Importer; ask its author for a fixed version")

PLUGIN = '''
from cic_seeding.importers.base import Importer, Outcome, Submission


class HalfDone(Importer):
    """Checks the chain but never sends anything."""

    name = "halfdone"

    def done_on_chain(self, users):
        return {}


class Complete(HalfDone):
    """Every primitive there."""

    name = "complete"

    def submit(self, users):
        return [Submission(u.address, "ref") for u in users]

    def outcomes(self, submissions):
        return [Outcome(s.address, True) for s in submissions]
'''


def install_plugin(site: Path, entry_points: dict[str, str]) -> None:
    """A distribution ``cic-conformance-plugin`` under ``site`` registering ``entry_points``
    (name -> ``module:attr``) in the importer group, and its module."""
    site.mkdir()
    (site / f"{MODULE}.py").write_text(PLUGIN)
    info = site / f"{MODULE}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cic-conformance-plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{GROUP}]\n" + "".join(f"{n} = {v}\n" for n, v in entry_points.items()))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plugin installed on ``sys.path`` for this test (its module forgotten after)."""
    site = tmp_path / "site"
    install_plugin(site, {"halfdone": f"{MODULE}:HalfDone", "complete": f"{MODULE}:Complete"})
    monkeypatch.syspath_prepend(str(site))
    try:
        yield site
    finally:
        sys.modules.pop(MODULE, None)


def test_an_importer_missing_abstract_methods_is_refused_naming_them(site: Path) -> None:
    assert {"halfdone", "complete"} <= set(importer_names())
    with pytest.raises(ImporterError) as refused:
        get_importer("halfdone")
    assert str(refused.value) == f"{REFUSED}; {HINT}"
    # the same plugin's complete importer loads: the refusal is about the missing methods
    complete = get_importer("complete")
    assert complete.__name__ == "Complete" and complete.__module__ == MODULE
    # the built-in importers all pass the same check
    assert all(get_importer(n) for n in importer_names() if n not in {"halfdone", "complete"})


def test_the_cli_refuses_it_with_one_error_line(site: Path, tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    out = run_cli("import", "halfdone", "--dir", str(tmp_path / "data"),
                  env={"PYTHONPATH": path})
    assert out.returncode == 1, out.stdout + out.stderr
    assert the_error_line(out.stderr) == f"error: {REFUSED}; {HINT}"
