"""The main job: devnet up, generate, import (eth), sync until done, verify, report.

Everything lands under one directory (``devnet/``, ``data/``); a rerun in the same directory
starts over. Nothing needs configuring: the devnet's embedded defaults are used.

With ``custodial`` users, a second data directory (``data-custodial/``) goes through the
custodial importer (``cic_eth``) and its syncer, and is verified with the custodial checks.
Their engine runs embedded in this process (SQLite in ``devnet/``, a Celery worker in a
thread) unless PostgreSQL or Redis is configured for it (``custodial_db_url``,
``custodial_broker_url``): then it runs as worker processes against them.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_devnet.custodial.devnet import EngineOptions
from cic_devnet.devnet import Devnet, devnet_up
from cic_seeding.config import DEVNET_FILE, Settings, load_settings
from cic_seeding.errors import UsageError
from cic_seeding.generate.generator import GenerateOptions, GenerateResult, generate
from cic_seeding.importers.base import Importer, ImportResult
from cic_seeding.importers.cic_eth import CicEthImporter
from cic_seeding.importers.eth import EthImporter
from cic_seeding.importers.meta import MetaImporter
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions, SyncResult

MARKER = ".cic-demo"

Say = Callable[[str], None]
#: ``verify(settings)``, or ``verify(settings, VerifyOptions(importer=...))``: a VerifyResult.
Verify = Callable[..., Any]


@dataclass
class CustodialDemo:
    """The custodial users' part of the demo: their data directory and each step's result."""

    data_dir: Path
    engine: str  # where the engine ran: "embedded in this process" or "N worker processes"
    generated: GenerateResult | None = None
    imported: ImportResult | None = None
    synced: SyncResult | None = None
    metadata: ImportResult | None = None
    verified: Any = None  # a VerifyResult
    report: Path | None = None

    @property
    def ok(self) -> bool:
        return bool(self.imported and self.imported.ok and self.synced and self.synced.ok
                    and (self.metadata is None or self.metadata.ok)
                    and (self.verified is None or self.verified.ok))

    def render_text(self) -> str:
        lines = [f"custodial users in {self.data_dir} (engine {self.engine}):"]
        if self.generated:
            lines.append(f"generate: {self.generated.generated} users "
                         f"(seed {self.generated.manifest.seed})")
        for part in (self.imported, self.synced, self.metadata, self.verified):
            if part is not None:
                lines.append(part.render_text())
        if self.report is not None:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)


@dataclass
class DemoResult:
    directory: Path
    devnet: dict[str, Any] = field(default_factory=dict)
    generated: GenerateResult | None = None
    imported: ImportResult | None = None
    metadata: ImportResult | None = None
    synced: SyncResult | None = None
    verified: Any = None  # a VerifyResult
    report: Path | None = None  # the HTML report of the verification
    custodial: CustodialDemo | None = None
    kept: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.imported and self.imported.ok and self.synced and self.synced.ok
                    and (self.metadata is None or self.metadata.ok)
                    and (self.verified is None or self.verified.ok)
                    and (self.custodial is None or self.custodial.ok))

    def render_text(self) -> str:
        lines = [f"demo in {self.directory}: {'OK' if self.ok else 'FAILED'}"]
        if self.generated:
            lines.append(f"generate: {self.generated.generated} users "
                         f"(seed {self.generated.manifest.seed})")
        if self.imported:
            lines.append(self.imported.render_text())
        if self.synced:
            lines.append(self.synced.render_text())
        if self.metadata:
            lines.append(self.metadata.render_text())
        if self.verified is not None:
            lines.append(self.verified.render_text())
        if self.report is not None:
            lines.append(f"report: {self.report}")
        if self.custodial is not None:
            lines.append(self.custodial.render_text())
        lines.append("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        if self.kept:
            lines.append(f"devnet left running at {self.devnet.get('rpc_url')}: "
                         f"--devnet {self.directory / 'devnet'}; stop it with "
                         f"`cic-seed devnet down --dir {self.directory / 'devnet'}`")
        return "\n".join(lines)


def _fresh(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).is_file():
            raise UsageError(f"{directory} exists and was not made by `cic-seed demo`",
                             hint="give an empty or new --dir")
        devnet_json = directory / "devnet" / DEVNET_FILE
        if devnet_json.is_file():
            from cic_devnet.devnet import devnet_down

            devnet_down(directory / "devnet")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("made by cic-seed demo; rerunning the demo wipes it\n")


def _run(importer: type[Importer], settings: Settings, stop: threading.Event | None
         ) -> ImportResult:
    job = importer(settings, stop=stop)
    try:
        return job.run()
    finally:
        job.close()


def run_demo(directory: str | Path, users: int = 300, *, seed: int | None = 1,
             keep: bool = False, meta: bool = True, custodial: int = 0,
             verify: Verify | None = None, say: Say = lambda s: None,
             stop: threading.Event | None = None) -> DemoResult:
    """Run the whole pipeline in ``directory``; the devnet stops at the end unless ``keep``.

    ``custodial`` more users go through the custodial engine (see the module documentation).
    """
    directory = Path(directory).resolve()
    if users <= 0:
        raise UsageError(f"--users must be positive, got {users}")
    if custodial < 0:
        raise UsageError(f"--custodial-users must not be negative, got {custodial}")
    # the settings of the engine to start: not those of any devnet CIC_DEVNET_DIR names
    engine = EngineOptions.from_settings(load_settings(devnet=False)) if custodial else None
    _fresh(directory)
    result = DemoResult(directory)
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        result.seconds[name] = now - clock
        clock = now

    say("starting the devnet (anvil + CIC contracts" + (
        ", custodial engine)" if engine is None or not engine.embedded
        else ", custodial engine embedded in this process)") if custodial else ")")
    devnet: Devnet = devnet_up(directory / "devnet", detach=keep, meta=meta,
                               custodial=bool(custodial), custodial_options=engine)
    result.devnet = devnet.info
    lap("devnet")
    try:
        settings = load_settings({"devnet_dir": str(devnet.directory),
                                  "data_dir": str(directory / "data")})
        say(f"generating {users} users")
        result.generated = generate(GenerateOptions(directory=Path(settings.data_dir),
                                                    count=users, seed=seed))
        lap("generate")
        say("importing (eth): keyfiles and AccountsIndex registrations")
        result.imported = _run(EthImporter, settings, stop)
        lap("import")
        say("syncing: opening balances, faucet payouts, gas")
        result.synced = run_sync(settings, "eth", SyncOptions(timeout=600, poll=0.2), stop=stop)
        lap("sync")
        if meta:
            say("writing metadata documents (cic_meta)")
            result.metadata = _run(MetaImporter, settings, stop)
            lap("metadata")
        if verify is not None:
            say("verifying")
            result.verified = verify(settings)
            from cic_seeding.verify.report import write_html_report

            result.report = write_html_report(result.verified, directory / "report.html")
            lap("verify")
        if custodial:
            result.custodial = _custodial_users(devnet, directory, custodial, seed, meta,
                                                verify, say, stop, lap)
    finally:
        if keep:
            result.kept = True
            devnet.close()  # an embedded engine ends with this process anyway
        else:
            devnet.stop()
    return result


def _custodial_users(devnet: Devnet, directory: Path, users: int, seed: int | None,
                     meta: bool, verify: Verify | None, say: Say,
                     stop: threading.Event | None, lap: Say) -> CustodialDemo:
    """Generate ``users`` more, import them through the custodial engine, sync, verify."""
    engine = devnet.info["custodial"]
    part = CustodialDemo(directory / "data-custodial",
                         "embedded in this process" if engine.get("embedded")
                         else f"{len(engine['workers'])} worker process(es)")
    settings = load_settings({"devnet_dir": str(devnet.directory),
                              "data_dir": str(part.data_dir)})
    say(f"generating {users} custodial users")
    part.generated = generate(GenerateOptions(directory=part.data_dir, count=users,
                                              seed=None if seed is None else seed + 1))
    say("importing (cic_eth): accounts created by the custodial engine")
    part.imported = _run(CicEthImporter, settings, stop)
    lap("custodial import")
    say("syncing (cic_eth): opening balances")
    part.synced = run_sync(settings, "cic_eth", SyncOptions(timeout=600, poll=0.2), stop=stop)
    lap("custodial sync")
    if meta:
        part.metadata = _run(MetaImporter, settings, stop)
    if verify is not None:
        from cic_seeding.verify import VerifyOptions
        from cic_seeding.verify.report import write_html_report

        say("verifying the custodial users")
        part.verified = verify(settings, VerifyOptions(importer="cic_eth"))
        part.report = write_html_report(part.verified, directory / "report-custodial.html")
        lap("custodial verify")
    return part
