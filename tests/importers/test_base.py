"""The importer orchestration with a fake importer (a seam fake: no chain, real state store)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from cic_seeding.config import Settings
from cic_seeding.datadir import DataDir, UserRow
from cic_seeding.errors import ImporterError, RpcUnavailableError, SignerError, UsageError
from cic_seeding.importers import GROUP, Importer, Outcome, Submission, get_importer, registry
from cic_seeding.state import Status, open_state_store


class Crash(Exception):
    """Stands in for kill -9 between two steps."""


class FakeImporter(Importer):
    name = "fake"

    def __init__(self, *args: object, chain: set[str], **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.retry_base = 0.001
        self.chain = chain  # registered addresses: survives "restarts"
        self.sent: list[str] = []
        self.finished: list[str] = []
        self.corrupt: set[str] = set()
        self.reject: set[str] = set()
        self.transient_submits = 0
        self.crash_after_submits: int | None = None
        self.begun = 0

    def prepare(self, users: Sequence[UserRow]) -> Mapping[str, str]:
        return {u.address: "corrupt record" for u in users if u.address in self.corrupt}

    def done_on_chain(self, users: Sequence[UserRow]) -> Mapping[str, str | None]:
        return {u.address: None for u in users if u.address.lower() in self.chain}

    def submit(self, users: Sequence[UserRow]) -> list[Submission]:
        if self.transient_submits:
            self.transient_submits -= 1
            raise RpcUnavailableError("node went away")
        for u in users:
            self.sent.append(u.address)
            if u.address not in self.reject:
                self.chain.add(u.address.lower())
        if self.crash_after_submits is not None:
            self.crash_after_submits -= 1
            if self.crash_after_submits < 0:
                raise Crash()
        return [Submission(u.address, f"0x{u.index:064x}") for u in users]

    def outcomes(self, submissions: Sequence[Submission]) -> list[Outcome]:
        return [Outcome(s.address, s.address.lower() in self.chain, reason=None
                        if s.address.lower() in self.chain else "reverted") for s in submissions]

    def finish(self, done: Sequence[tuple[UserRow, str]]) -> None:
        self.finished.extend(u.address for u, _ in done)

    def begin(self) -> None:
        self.begun += 1


def make_dir(root: Path, n: int) -> DataDir:
    root.mkdir(parents=True, exist_ok=True)
    (root / "users.csv").write_text("".join(
        f"{i},0x{i + 1:040X},+2547{i:08d}\n" for i in range(n)))
    return DataDir(root)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, object]:
    data = make_dir(tmp_path / "data", 55)
    settings = Settings(data_dir=str(data.root), batch_size=10, rpc_retries=3)
    return {"settings": settings, "data": data, "chain": set()}


def fake(env: dict[str, object], **kw: object) -> FakeImporter:
    return FakeImporter(env["settings"], chain=env["chain"], **kw)  # type: ignore[arg-type]


def addresses(data: DataDir) -> list[str]:
    return [u.address for u in data.users()]


def test_run_imports_everyone_once_with_progress(env: dict[str, object]) -> None:
    seen: list[int] = []
    imp = fake(env, progress=seen.append)
    result = imp.run()
    assert result.ok and result.confirmed == 55 and result.submitted == 55
    assert sum(seen) == 55 and imp.begun == 1
    assert sorted(imp.sent) == sorted(addresses(env["data"]))  # type: ignore[arg-type]
    assert sorted(imp.finished) == sorted(imp.sent)
    assert imp.store.counts("fake")[Status.CONFIRMED] == 55
    assert result.to_dict()["ok"] is True and "55 users imported" in result.render_text()
    again = fake(env).run()
    assert again.done_before == 55 and again.submitted == 0


def test_resume_after_crash_never_resends_what_the_chain_has(env: dict[str, object]) -> None:
    imp = fake(env)
    imp.crash_after_submits = 2  # third batch is sent, then the process "dies"
    with pytest.raises(Crash):
        imp.run()
    imp.store.close()
    counts = open_state_store(env["settings"]).counts("fake")  # type: ignore[arg-type]
    assert counts[Status.CONFIRMED] + counts[Status.SUBMITTED] <= 30
    rerun = fake(env)
    result = rerun.run()
    assert result.ok and result.found_on_chain > 0
    assert result.found_on_chain + result.confirmed + result.done_before == 55
    assert sorted(imp.sent + rerun.sent) == sorted(addresses(env["data"]))  # type: ignore
    assert rerun.store.counts("fake")[Status.CONFIRMED] == 55


def test_limit_imports_at_most_n(env: dict[str, object]) -> None:
    result = fake(env).run(limit=12)
    assert result.confirmed == 12 and result.left == 43
    assert fake(env).run(limit=100).confirmed == 43


def test_bad_users_fail_the_rest_proceed_and_a_rerun_retries(env: dict[str, object]) -> None:
    users = addresses(env["data"])  # type: ignore[arg-type]
    imp = fake(env)
    imp.corrupt, imp.reject = {users[3]}, {users[17]}
    result = imp.run()
    assert not result.ok and result.failed == 2 and result.confirmed == 53
    assert dict(result.failures) == {users[3].lower(): "corrupt record", users[17]: "reverted"}
    state = imp.store.user("fake", users[3])
    assert state is not None and state.status is Status.FAILED and state.reason == "corrupt record"
    rerun = fake(env).run()
    assert rerun.ok and rerun.confirmed == 2


def test_transient_errors_are_retried_terminal_ones_stop(env: dict[str, object]) -> None:
    imp = fake(env)
    imp.transient_submits = 2
    assert imp.run().ok
    root = Path(env["settings"].data_dir)  # type: ignore[attr-defined]
    fresh = Settings(data_dir=str(root), state_url=str(root / "other.db"), batch_size=10,
                     rpc_retries=1)
    imp = FakeImporter(fresh, chain=set())
    imp.transient_submits = 5
    with pytest.raises(RpcUnavailableError, match="after 2 attempts"):
        imp.run()

    class NoRights(FakeImporter):
        def submit(self, users: Sequence[UserRow]) -> list[Submission]:
            raise SignerError("signer 0x.. is not a writer of the accounts index")

    with pytest.raises(SignerError):
        NoRights(fresh, chain=set()).run()


def test_stop_event_interrupts_between_batches(env: dict[str, object]) -> None:
    imp = fake(env)
    calls = []

    def progress(n: int) -> None:
        calls.append(n)
        imp.stop.set()

    imp.progress = progress
    with pytest.raises(KeyboardInterrupt):
        imp.run()
    assert imp.store.counts("fake")[Status.CONFIRMED] < 55
    assert fake(env).run().ok


def test_registry_lists_valid_names_and_near_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    eps = {"fake": EntryPoint("fake", f"{__name__}:FakeImporter", GROUP),
           "broken": EntryPoint("broken", "no_such_module_xyz:Thing", GROUP),
           "notone": EntryPoint("notone", "pathlib:Path", GROUP)}
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)
    assert get_importer("fake") is FakeImporter
    assert registry.importer_names() == ["broken", "fake", "notone"]
    with pytest.raises(UsageError, match=r"unknown importer 'fak'; did you mean fake.*"
                                         r"valid importers: broken, fake, notone"):
        get_importer("fak")
    with pytest.raises(ImporterError, match="failed to load"):
        get_importer("broken")
    with pytest.raises(ImporterError, match="not an Importer"):
        get_importer("notone")
