"""The main job: devnet up, generate, import (eth), sync until done, verify, report.

Everything lands under one directory (``devnet/``, ``data/``); a rerun in the same directory
starts over. Nothing needs configuring: the devnet's embedded defaults are used.

Each step is a *stage* (:class:`Stages`): it says what it does, and how long it took once it
is done; its time is kept under its name, and the import, sync and verify stages of each group
of users go into the timeline of its data directory, which its HTML report shows. Besides the
sovereign users (``data/``), two more groups of users may be seeded, each in a data directory
of its own, each verified with the checks that apply to it:

* ``custodial`` users (``data-custodial/``) go through the custodial importer (``cic_eth``)
  and its syncer. Their engine runs embedded in this process (SQLite in ``devnet/``, a Celery
  worker in a thread) unless PostgreSQL or Redis is configured for it (``custodial_db_url``,
  ``custodial_broker_url``): then it runs as worker processes against them. With ``keep`` an
  engine without PostgreSQL and Redis runs as a process of its own instead (the same SQLite
  file, its broker and replies files in ``devnet/custodial-spool``), so that it outlives the
  demo like the devnet's other services.
* ``ussd`` users (``data-ussd/``) register themselves through the USSD gateway's menus
  (``cic_ussd``); their PINs are written (``pins.csv``) and imported (``ussd-pins``), the
  syncer pays them, the verifier runs the USSD checks too, and at the end one of them logs in:
  a real session against the gateway -- the service code dialled, the balance chosen, the PIN
  entered -- whose screens are shown. The gateway keeps its sessions in Redis and its accounts
  in PostgreSQL, and its engine must be reachable from its process: with ``ussd`` the engine
  runs as worker processes on PostgreSQL and Redis (the local defaults unless configured).

With ``keep`` every service stays up afterwards (:attr:`DemoResult.services` lists each with
its pid and address); ``cic-seed devnet down DIR/devnet`` stops them all.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cic_devnet.custodial.devnet import EngineOptions
from cic_devnet.devnet import Devnet, Service, devnet_services, devnet_up
from cic_seeding.config import DEVNET_FILE, Settings, load_settings
from cic_seeding.datadir import StageTiming, append_stage
from cic_seeding.errors import UsageError
from cic_seeding.generate.generator import GenerateOptions, GenerateResult, generate
from cic_seeding.importers.base import Importer, ImportResult
from cic_seeding.importers.cic_eth import CicEthImporter
from cic_seeding.importers.eth import EthImporter
from cic_seeding.importers.meta import MetaImporter
from cic_seeding.sync.run import run_sync
from cic_seeding.sync.syncer import SyncOptions, SyncResult

MARKER = ".cic-demo"
#: How long the syncer may take to pay a part's users before the demo gives up on it.
SYNC_TIMEOUT = 600.0

Say = Callable[[str], None]
#: ``verify(settings)``, or ``verify(settings, VerifyOptions(importer=...))``: a VerifyResult.
Verify = Callable[..., Any]


class Stages:
    """The demo's stages: each says what it does when it starts and how long it took when it
    is done, and its time is kept by name (in order) whether it ends well or not."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, doing: str) -> Iterator[Timed]:
        self.say(doing)
        timed = Timed()
        try:
            yield timed
        finally:
            self.seconds[name] = timed.seconds()
        self.say(f"{name} done in {self.seconds[name]:.1f} s")


class Timed:
    """A stage under way: :meth:`record` puts what it did into a data directory's timeline
    (as `cic-seed import`, `sync` and `verify` record theirs), for the HTML report."""

    def __init__(self) -> None:
        self.began, self.start = time.time(), time.monotonic()

    def seconds(self) -> float:
        return time.monotonic() - self.start

    def record(self, data_dir: str | Path, label: str, step: Any) -> None:
        """``step`` (an ImportResult, a SyncResult or a VerifyResult) as stage ``label``."""
        if isinstance(step, ImportResult):
            done, total = step.found_on_chain + step.confirmed + step.failed, step.total
        elif isinstance(step, SyncResult):
            done, total = step.done, step.users
        else:
            done = total = step.users
        append_stage(data_dir, StageTiming(label, self.began, self.seconds(), done, total,
                                           ok=bool(step.ok)))


@dataclass
class UsersPart:
    """One more group of users the demo seeds: their data directory and each step's result."""

    title: str
    data_dir: Path
    generated: GenerateResult | None = None
    imported: ImportResult | None = None
    synced: SyncResult | None = None
    metadata: ImportResult | None = None
    verified: Any = None  # a VerifyResult
    report: Path | None = None

    def steps(self) -> list[Any]:
        """The results that say whether the part went well, in the order they were made."""
        return [self.imported, self.synced, self.metadata, self.verified]

    @property
    def ok(self) -> bool:
        """Imported and synced, and every step that ran went well."""
        return (self.imported is not None and self.synced is not None
                and all(step.ok for step in self.steps() if step is not None))

    def heading(self) -> str:
        return f"{self.title} in {self.data_dir}:"

    def render_text(self) -> str:
        lines = [self.heading()]
        if self.generated:
            lines.append(f"generate: {self.generated.generated} users "
                         f"(seed {self.generated.manifest.seed})")
        lines += [step.render_text() for step in self.steps() if step is not None]
        if self.report is not None:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)


@dataclass
class CustodialDemo(UsersPart):
    """The custodial users' part of the demo."""

    engine: str = ""  # where the engine ran: "embedded in this process", "N worker process(es)"

    def heading(self) -> str:
        return f"{self.title} in {self.data_dir} (engine {self.engine}):"


@dataclass
class UssdLogin:
    """A USSD session of one user after the demo: what was typed and what the gateway said.
    The PIN is shown masked."""

    phone: str
    url: str
    service_code: str
    typed: list[str] = field(default_factory=list)
    screens: list[Any] = field(default_factory=list)  # cic_seeding.ussd.client.Screen
    error: str = ""

    @property
    def ok(self) -> bool:
        from cic_seeding.ussd.texts import balance_prefixes

        return (not self.error and len(self.screens) == len(self.typed) and bool(self.screens)
                and self.screens[-1].end and self.screens[-1].text.startswith(balance_prefixes()))

    def render_text(self) -> str:
        lines = [f"USSD login of {self.phone} at {self.url}:"]
        for typed, screen in zip(self.typed, self.screens, strict=False):
            lines.append(f"  > {typed}")
            head, *more = str(screen).splitlines()
            lines += [f"  {head}", *(f"      {line}" for line in more)]
        if self.error:
            lines.append(f"  failed: {self.error}")
        elif not self.ok:
            lines.append("  failed: the session did not end on the balance screen")
        return "\n".join(lines)


@dataclass
class UssdDemo(UsersPart):
    """The USSD users' part of the demo: registered through the gateway, PINs imported."""

    pins: ImportResult | None = None
    login: UssdLogin | None = None

    def steps(self) -> list[Any]:
        return [self.imported, self.pins, self.synced, self.metadata, self.verified]

    @property
    def ok(self) -> bool:
        return super().ok and self.login is not None and self.login.ok

    def render_text(self) -> str:
        text = super().render_text()
        return text if self.login is None else f"{text}\n{self.login.render_text()}"


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
    ussd: UssdDemo | None = None
    kept: bool = False
    #: With ``keep``: the processes left running.
    services: list[Service] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def devnet_dir(self) -> Path:
        return self.directory / "devnet"

    @property
    def ok(self) -> bool:
        return bool(self.imported and self.imported.ok and self.synced and self.synced.ok
                    and (self.metadata is None or self.metadata.ok)
                    and (self.verified is None or self.verified.ok)
                    and all(part is None or part.ok for part in (self.custodial, self.ussd)))

    def render_text(self) -> str:
        lines = [f"demo in {self.directory}: {'OK' if self.ok else 'FAILED'}"]
        if self.generated:
            lines.append(f"generate: {self.generated.generated} users "
                         f"(seed {self.generated.manifest.seed})")
        lines += [step.render_text() for step in (self.imported, self.synced, self.metadata,
                                                   self.verified) if step is not None]
        if self.report is not None:
            lines.append(f"report: {self.report}")
        lines += [part.render_text() for part in (self.custodial, self.ussd) if part is not None]
        lines.append("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        if self.kept:
            lines.append(self.render_services())
        return "\n".join(lines)

    def render_services(self) -> str:
        """The services left running, each with its pid and address, and how to stop them."""
        if not self.services:
            return f"nothing left running in {self.devnet_dir}"
        width = max(len(s.name) for s in self.services)
        return "\n".join([
            f"left running (--devnet {self.devnet_dir}):",
            *(f"  {s.name:<{width}}  pid {s.pid:<7}  {s.address}" for s in self.services),
            f"stop them all with `cic-seed devnet down --devnet {self.devnet_dir}` "
            "(one alone: `kill PID`)"])


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


def _engine_options(settings: Settings, custodial: bool, ussd: bool) -> EngineOptions | None:
    """The custodial engine to start (as ``settings`` configure it); for the USSD gateway one
    on PostgreSQL and Redis."""
    if not (custodial or ussd):
        return None
    return EngineOptions.from_settings(settings, embedded=False if ussd else None)


def _starting(meta: bool, engine: EngineOptions | None, ussd: bool, keep: bool) -> str:
    """What the devnet stage starts, in words."""
    parts = ["anvil + CIC contracts"]
    if meta or ussd:
        parts.append("metadata server")
    if engine is not None:
        parts.append("custodial engine " + (
            "as workers on PostgreSQL and Redis" if not engine.embedded
            else "as a process of its own on SQLite" if keep
            else "embedded in this process"))
    if ussd:
        parts.append("USSD gateway")
    return f"starting the devnet ({', '.join(parts)})"


def run_demo(directory: str | Path, users: int = 300, *, seed: int | None = 1,
             keep: bool = False, meta: bool = True, custodial: int = 0, ussd: int = 0,
             verify: Verify | None = None, say: Say = lambda s: None,
             stop: threading.Event | None = None) -> DemoResult:
    """Run the whole pipeline in ``directory``; the devnet stops at the end unless ``keep``.

    ``custodial`` more users go through the custodial engine, ``ussd`` more through the USSD
    gateway (see the module documentation).
    """
    directory = Path(directory).resolve()
    if users <= 0:
        raise UsageError(f"--users must be positive, got {users}")
    if custodial < 0:
        raise UsageError(f"--custodial-users must not be negative, got {custodial}")
    if ussd < 0:
        raise UsageError(f"--ussd-users must not be negative, got {ussd}")
    if ussd and not meta:
        raise UsageError("--ussd needs the metadata server (the gateway writes each new "
                         "user's phone pointer there)", hint="leave out --no-meta")
    # the services' settings: not those of any devnet CIC_DEVNET_DIR names
    services = load_settings(devnet=False)
    engine = _engine_options(services, bool(custodial), bool(ussd))
    _fresh(directory)
    result = DemoResult(directory, kept=keep)
    stages = Stages(say)
    result.seconds = stages.seconds
    with stages.stage("devnet", _starting(meta, engine, bool(ussd), keep)):
        devnet: Devnet = devnet_up(directory / "devnet", detach=keep, meta=meta,
                                   custodial=bool(custodial), custodial_options=engine,
                                   ussd=bool(ussd), ussd_db=services.ussd_db_url,
                                   ussd_schema=services.ussd_db_schema)
    result.devnet = devnet.info
    try:
        _sovereign_users(result, devnet, users, seed, meta, verify, stages, stop)
        if custodial:
            result.custodial = _custodial_users(devnet, directory, custodial, seed, meta,
                                                verify, stages, stop)
        if ussd:
            result.ussd = _ussd_users(devnet, directory, ussd, seed, verify, stages, stop)
    finally:
        if keep:
            devnet.close()  # nothing runs in this process when kept; the rest stays
            result.services = devnet_services(devnet.info)
        else:
            devnet.stop()
    return result


def _settings(devnet: Devnet, data_dir: Path) -> Settings:
    return load_settings({"devnet_dir": str(devnet.directory), "data_dir": str(data_dir)})


def _sovereign_users(result: DemoResult, devnet: Devnet, users: int, seed: int | None,
                     meta: bool, verify: Verify | None, stages: Stages,
                     stop: threading.Event | None) -> None:
    """Generate, import (eth), sync, metadata, verify: the demo's main users."""
    settings = _settings(devnet, result.directory / "data")
    with stages.stage("generate", f"generating {users} users"):
        result.generated = generate(GenerateOptions(directory=Path(settings.data_dir),
                                                    count=users, seed=seed))
    with stages.stage("import", "importing (eth): keyfiles and AccountsIndex registrations"
                      ) as timed:
        result.imported = _run(EthImporter, settings, stop)
        timed.record(settings.data_dir, "import eth", result.imported)
    with stages.stage("sync", "syncing: opening balances, faucet payouts, gas") as timed:
        result.synced = run_sync(settings, "eth", SyncOptions(timeout=SYNC_TIMEOUT, poll=0.2),
                                 stop=stop)
        timed.record(settings.data_dir, "sync eth", result.synced)
    if meta:
        with stages.stage("metadata", "writing metadata documents (cic_meta)") as timed:
            result.metadata = _run(MetaImporter, settings, stop)
            timed.record(settings.data_dir, "import cic_meta", result.metadata)
    if verify is not None:
        with stages.stage("verify", "verifying") as timed:
            result.verified = verify(settings)
            timed.record(settings.data_dir, "verify", result.verified)  # before the report
            result.report = _report(result.verified, result.directory / "report.html")


def _report(verified: Any, path: Path) -> Path:
    from cic_seeding.verify.report import write_html_report

    return write_html_report(verified, path)


def _custodial_users(devnet: Devnet, directory: Path, users: int, seed: int | None,
                     meta: bool, verify: Verify | None, stages: Stages,
                     stop: threading.Event | None) -> CustodialDemo:
    """Generate ``users`` more, import them through the custodial engine, sync, verify."""
    part = CustodialDemo("custodial users", directory / "data-custodial",
                         engine=_engine_words(devnet.info["custodial"]))
    settings = _settings(devnet, part.data_dir)
    with stages.stage("custodial generate", f"generating {users} custodial users"):
        part.generated = generate(GenerateOptions(directory=part.data_dir, count=users,
                                                  seed=None if seed is None else seed + 1))
    with stages.stage("custodial import",
                      "importing (cic_eth): accounts created by the custodial engine") as timed:
        part.imported = _run(CicEthImporter, settings, stop)
        timed.record(settings.data_dir, "import cic_eth", part.imported)
    _pay_describe_verify(part, settings, "cic_eth", "custodial", meta, verify, stages, stop,
                         directory / "report-custodial.html")
    return part


def _pay_describe_verify(part: UsersPart, settings: Settings, importer: str, label: str,
                         meta: bool, verify: Verify | None, stages: Stages,
                         stop: threading.Event | None, report: Path) -> None:
    """The stages every extra group of users ends with: sync ``importer``'s users, write
    their metadata documents (with ``meta``), verify them with ``importer``'s checks and
    write ``report``. ``label`` begins the stage names; the group is called by it in words
    (USSD in capitals)."""
    who = label.upper() if label == "ussd" else label
    with stages.stage(f"{label} sync", f"syncing ({importer}): opening balances") as timed:
        part.synced = run_sync(settings, importer,
                               SyncOptions(timeout=SYNC_TIMEOUT, poll=0.2), stop=stop)
        timed.record(settings.data_dir, f"sync {importer}", part.synced)
    if meta:
        with stages.stage(f"{label} metadata",
                          f"writing the {who} users' metadata documents (cic_meta)"
                          ) as timed:
            part.metadata = _run(MetaImporter, settings, stop)
            timed.record(settings.data_dir, "import cic_meta", part.metadata)
    if verify is not None:
        from cic_seeding.verify import VerifyOptions

        with stages.stage(f"{label} verify", f"verifying the {who} users") as timed:
            part.verified = verify(settings, VerifyOptions(importer=importer))
            timed.record(settings.data_dir, "verify", part.verified)
            part.report = _report(part.verified, report)


def _engine_words(engine: dict[str, Any]) -> str:
    """Where the custodial engine of devnet.json's section ``engine`` runs, in words."""
    from cic_seeding.custodial.spool import is_spool

    if engine.get("embedded"):
        return "embedded in this process"
    if is_spool(str(engine.get("broker_url", ""))):
        return "a process of its own on SQLite, its broker files"
    return f"{len(engine['workers'])} worker process(es)"


def _ussd_users(devnet: Devnet, directory: Path, users: int, seed: int | None,
                verify: Verify | None, stages: Stages,
                stop: threading.Event | None) -> UssdDemo:
    """Generate ``users`` more, register them through the USSD gateway, import their PINs,
    sync, write their metadata, verify (the USSD checks too), and log one of them in."""
    from cic_seeding.importers.cic_ussd import CicUssdImporter
    from cic_seeding.importers.ussd_accounts import UssdPinsImporter
    from cic_seeding.ussd.pins import write_pins

    part = UssdDemo("USSD users", directory / "data-ussd")
    settings = _settings(devnet, part.data_dir)
    with stages.stage("ussd generate", f"generating {users} USSD users"):
        part.generated = generate(GenerateOptions(directory=part.data_dir, count=users,
                                                  seed=None if seed is None else seed + 2))
    with stages.stage("ussd import", "registering them through the USSD gateway's menus "
                      "(cic_ussd): language, names, gender, location, PIN") as timed:
        part.imported = _run(CicUssdImporter, settings, stop)
        timed.record(settings.data_dir, "import cic_ussd", part.imported)
    with stages.stage("ussd pins", "writing pins.csv and importing the PINs (ussd-pins)"
                      ) as timed:
        write_pins(part.data_dir)
        part.pins = _run(UssdPinsImporter, settings, stop)
        timed.record(settings.data_dir, "import ussd-pins", part.pins)
    _pay_describe_verify(part, settings, "cic_ussd", "ussd", True, verify, stages, stop,
                         directory / "report-ussd.html")
    with stages.stage("ussd login", "logging one USSD user in with its PIN"):
        part.login = ussd_login(settings)
    return part


def ussd_login(settings: Settings, index: int = 0) -> UssdLogin:
    """A USSD session of user ``index`` of the data directory: dial the service code, choose
    the balance, enter the user's seeded PIN; the screens the gateway answers."""
    from cic_seeding.datadir import DataDir
    from cic_seeding.errors import CicSeedError
    from cic_seeding.ussd.client import UssdClient
    from cic_seeding.ussd.pins import seeded_pin

    data = DataDir(settings.data_dir)
    user = next(u for u in data.users() if u.index == index)
    pin = seeded_pin(data.manifest().seed, user.index)
    with UssdClient.from_settings(settings) as client:
        login = UssdLogin(user.phone, client.url, client.service_code,
                          typed=[f"dial {client.service_code}", "1",
                                 "**** (the user's seeded PIN)"])
        try:
            login.screens = client.session(user.phone, ["1", pin])
        except CicSeedError as exc:
            login.error = str(exc)
    return login
