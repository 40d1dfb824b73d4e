"""The main job: devnet up, generate, import (eth), sync until done, verify, report.

Everything lands under one directory (``devnet/``, ``data/``); a rerun in the same directory
starts over. Nothing needs configuring: the devnet's embedded defaults are used.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_devnet.devnet import Devnet, devnet_up
from cic_seeding.config import Settings, load_settings
from cic_seeding.errors import UsageError
from cic_seeding.generate.generator import GenerateOptions, GenerateResult, generate
from cic_seeding.importers.base import ImportResult
from cic_seeding.importers.eth import EthImporter
from cic_seeding.importers.meta import MetaImporter
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions, SyncResult

MARKER = ".cic-demo"

Say = Callable[[str], None]


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
    kept: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.imported and self.imported.ok and self.synced and self.synced.ok
                    and (self.metadata is None or self.metadata.ok)
                    and (self.verified is None or self.verified.ok))

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
        devnet_json = directory / "devnet" / "devnet.json"
        if devnet_json.is_file():
            from cic_devnet.devnet import devnet_down

            devnet_down(directory / "devnet")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("made by cic-seed demo; rerunning the demo wipes it\n")


def run_demo(directory: str | Path, users: int = 300, *, seed: int | None = 1,
             keep: bool = False, meta: bool = True,
             verify: Callable[[Settings], Any] | None = None,
             say: Say = lambda s: None, stop: threading.Event | None = None) -> DemoResult:
    """Run the whole pipeline in ``directory``; the devnet stops at the end unless ``keep``."""
    directory = Path(directory).resolve()
    if users <= 0:
        raise UsageError(f"--users must be positive, got {users}")
    _fresh(directory)
    result = DemoResult(directory)
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        result.seconds[name] = now - clock
        clock = now

    say("starting the devnet (anvil + CIC contracts)")
    devnet: Devnet = devnet_up(directory / "devnet", detach=keep, meta=meta)
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
        importer = EthImporter(settings, stop=stop)
        try:
            result.imported = importer.run()
        finally:
            importer.close()
        lap("import")
        say("syncing: opening balances, faucet payouts, gas")
        result.synced = run_sync(settings, "eth", SyncOptions(timeout=600, poll=0.2), stop=stop)
        lap("sync")
        if meta:
            say("writing metadata documents (cic_meta)")
            writer = MetaImporter(settings, stop=stop)
            try:
                result.metadata = writer.run()
            finally:
                writer.close()
            lap("metadata")
        if verify is not None:
            say("verifying")
            result.verified = verify(settings)
            from cic_seeding.verify.report import write_html_report

            result.report = write_html_report(result.verified, directory / "report.html")
            lap("verify")
    finally:
        if keep:
            result.kept = True
        else:
            devnet.stop()
    return result
