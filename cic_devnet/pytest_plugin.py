"""pytest plugin: a CIC devnet for the test session, and verified users seeded on it per test.

Registered through the ``pytest11`` entry point, so a project that installs
``cic-seeding[devnet]`` gets two fixtures without importing anything::

    def test_payout(cic_seed):
        users = cic_seed(50, seed=1)  # generated, imported (eth), synced and verified
        assert len(users.addresses) == 50

``cic_devnet`` (session) starts anvil with the CIC contracts once, on a free port in a
temporary directory, and stops it by process id when the session ends. ``cic_seed``
(function) is a factory: each call generates users into a temporary data directory, imports
them with the sovereign importer, pays them with the syncer, verifies them (a failed check
fails the test) and returns a :class:`SeededUsers`. Everything a test did to the chain is
undone when it ends (anvil's ``evm_snapshot``/``evm_revert``), so tests may use the same seed
without meeting each other's users.

The devnet mines each transaction as it arrives (anvil's automine), so a test's own
transactions get receipts (moments after ``eth_sendRawTransaction`` answers: ask until the
receipt is there, as examples/test_example.py does); ``cic_seed`` turns that off while it
seeds, since the toolkit sends in batches and mines them itself. Ini options
(``[tool.pytest.ini_options]``, ``pytest.ini``, or ``-o name=value``) shape the devnet:
``cic_devnet_meta`` (also run the metadata server; needs ``cic-seeding[meta]``),
``cic_devnet_automine``, ``cic_devnet_chain_spec``, ``cic_devnet_token_symbol``,
``cic_devnet_decimals``, ``cic_devnet_faucet_amount``.

pytest loads this module at the start of every run of every project in the environment, this
project's own included: it imports only pytest and the standard library at module level; the
devnet and the library are imported when a fixture is first used.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from cic_devnet.devnet import Devnet
    from cic_seeding.chain.rpc import JsonRpc
    from cic_seeding.config import Settings
    from cic_seeding.datadir.layout import UserRow
    from cic_seeding.importers.base import ImportResult
    from cic_seeding.sync.syncer import SyncResult
    from cic_seeding.verify import VerifyResult

#: Ini options: name -> (help, default). Values are strings; ``cic_devnet_meta`` a bool.
INI_OPTIONS = {
    "cic_devnet_chain_spec": ("cic_devnet: chain spec of the devnet (its network id is the "
                              "chain id)", "evm:byzantium:8996:bloxberg"),
    "cic_devnet_token_symbol": ("cic_devnet: symbol of the devnet's default token", "GFT"),
    "cic_devnet_decimals": ("cic_devnet: decimals of the devnet's token (and of the users' "
                            "balances that cic_seed generates)", "6"),
    "cic_devnet_faucet_amount": ("cic_devnet: faucet payout in whole tokens (0: none)", "5"),
}
META_OPTION = "cic_devnet_meta"
AUTOMINE_OPTION = "cic_devnet_automine"
#: Seconds the syncer may take to pay one cic_seed call's users before the test fails.
SYNC_TIMEOUT = 600.0


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ini options that shape the session's devnet."""
    for name, (text, default) in INI_OPTIONS.items():
        parser.addini(name, text, default=default)
    parser.addini(META_OPTION, "cic_devnet: also run the metadata server (needs "
                  "cic-seeding[meta]); cic_seed then writes every user's metadata documents",
                  type="bool", default=False)
    parser.addini(AUTOMINE_OPTION, "cic_devnet: mine each transaction as it arrives, so the "
                  "tests' own transactions get receipts (cic_seed mines its batches itself)",
                  type="bool", default=True)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; a malformed ini option stops the run before any test."""
    for name in ("cic_devnet_decimals", "cic_devnet_faucet_amount"):
        _int_option(config, name)
    config.addinivalue_line("markers", "cic_devnet: uses the CIC devnet of the session "
                            "(added to every test that uses cic_devnet or cic_seed)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use the devnet, so ``-m "not cic_devnet"`` leaves them out."""
    for item in items:
        if {"cic_devnet", "cic_seed"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cic_devnet)


def _int_option(config: pytest.Config, name: str) -> int:
    value = str(config.getini(name)).strip()
    try:
        return int(value)
    except ValueError:
        raise pytest.UsageError(f"ini option {name} must be a whole number, got {value!r}"
                                ) from None


@pytest.fixture(scope="session")
def cic_devnet(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    """A running devnet for the whole session: anvil on a free 127.0.0.1 port with the CIC
    contracts deployed (``.rpc_url``, ``.registry``, ``.directory`` holding devnet.json and the
    deployer's keyfile, ``.info`` its content). Stopped by process id when the session ends.
    What a test sends to it directly stays for the next tests, unless the test uses
    ``cic_seed``, which reverts the chain after the test."""
    from cic_devnet.deploy import DeployOptions
    from cic_devnet.devnet import devnet_up
    from cic_seeding.errors import CicSeedError

    config = request.config
    options = DeployOptions(token_symbol=str(config.getini("cic_devnet_token_symbol")),
                            decimals=_int_option(config, "cic_devnet_decimals"),
                            faucet_amount_units=_int_option(config, "cic_devnet_faucet_amount"))
    try:
        devnet = devnet_up(tmp_path_factory.mktemp("cic-devnet"),
                           chain_spec=str(config.getini("cic_devnet_chain_spec")),
                           options=options, meta=bool(config.getini(META_OPTION)))
    except CicSeedError as exc:
        pytest.fail(f"cic_devnet: the devnet did not start: {exc}", pytrace=False)
    try:
        if config.getini(AUTOMINE_OPTION):
            _rpc(devnet).call("evm_setAutomine", [True])
        yield devnet
    finally:
        devnet.stop()


def _rpc(devnet: Devnet) -> JsonRpc:
    from cic_seeding.chain.rpc import JsonRpc

    return JsonRpc(devnet.rpc_url)


@dataclass
class SeededUsers:
    """What one ``cic_seed(...)`` call made: the data directory (manifest, records, users.csv,
    keystore/), the settings that reach it and the devnet, the users, and each step's result."""

    data_dir: Path
    settings: Settings
    seed: int
    users: list[UserRow]
    imported: ImportResult
    synced: SyncResult
    metadata: ImportResult | None = None
    verified: VerifyResult | None = None
    importer: str = "eth"

    @property
    def addresses(self) -> list[str]:
        """The users' checksummed addresses, in index order."""
        return [user.address for user in self.users]

    def private_key(self, index: int) -> str:
        """User ``index``'s private key (hex, 0x-prefixed): a function of the seed alone."""
        from cic_seeding.generate.keys import derive_private_key

        return "0x" + derive_private_key(self.seed, index).hex()

    def verify(self, **options: Any) -> VerifyResult:
        """Verify the users again (say, after the test moved money); ``options`` are fields of
        :class:`cic_seeding.verify.VerifyOptions` (``include=("balance",)``, ...). Returns the
        result; ``.ok``, ``.render_text()``, ``.failure_groups()``."""
        from cic_seeding.verify import VerifyOptions, run_verify

        return run_verify(self.settings, VerifyOptions(importer=self.importer, **options))


@dataclass
class CicSeed:
    """The ``cic_seed`` fixture: call it to seed users on the session's devnet."""

    devnet: Devnet
    directory: Path
    seeded: list[SeededUsers] = field(default_factory=list)

    def __call__(self, users: int, *, seed: int | None = None, verify: bool = True,
                 meta: bool | None = None, transactions: int = 0,
                 tags: tuple[str, ...] | None = None, gift_threshold: int | None = None,
                 settings: dict[str, Any] | None = None) -> SeededUsers:
        """Generate ``users`` users from ``seed`` (default: 1 for a test's first call, 2 for
        its second ...), import them (eth), pay them (sync) and, with ``verify``, verify them:
        a failed step or check fails the test with its report. ``meta`` writes the users'
        metadata documents (default: when the devnet runs the metadata server);
        ``transactions``, ``tags`` and ``gift_threshold`` are the generator's options;
        ``settings`` overrides settings by name (``{"batch_size": 50}``)."""
        from cic_seeding.errors import CicSeedError

        seed = len(self.seeded) + 1 if seed is None else seed
        if seed in {done.seed for done in self.seeded}:
            pytest.fail(f"cic_seed: seed {seed} was already seeded in this test; give each "
                        "call its own seed", pytrace=False)
        data_dir = self.directory / f"cic-seed-{len(self.seeded) + 1}-seed{seed}"
        rpc = _rpc(self.devnet)
        automine = bool(rpc.call("anvil_getAutomine"))
        if automine:  # the toolkit sends in batches and mines them itself
            rpc.call("evm_setAutomine", [False])
        try:
            made = self._seed(data_dir, users, seed, verify, meta, transactions, tags,
                              gift_threshold, settings or {})
        except CicSeedError as exc:
            pytest.fail(f"cic_seed: {exc}", pytrace=False)
        finally:
            if automine:
                rpc.call("evm_setAutomine", [True])
        self.seeded.append(made)
        return made

    def _seed(self, data_dir: Path, users: int, seed: int, verify: bool, meta: bool | None,
              transactions: int, tags: tuple[str, ...] | None, gift_threshold: int | None,
              overrides: dict[str, Any]) -> SeededUsers:
        from cic_seeding.config import load_settings
        from cic_seeding.datadir import DataDir
        from cic_seeding.generate.generator import GenerateOptions, generate
        from cic_seeding.importers.registry import get_importer
        from cic_seeding.sync.run import run_sync
        from cic_seeding.sync.syncer import SyncOptions

        info = self.devnet.info
        if meta and "meta" not in info:
            pytest.fail(f"cic_seed: meta=True, but the devnet runs no metadata server; set the "
                        f"ini option {META_OPTION} = true", pytrace=False)
        generate(GenerateOptions(directory=data_dir, count=users, seed=seed,
                                 chain_spec=info["chain_spec"],
                                 decimals=int(info["token"]["decimals"]), transactions=transactions,
                                 tags=tags, gift_threshold=gift_threshold, workers=1))
        # the devnet and the overrides only: neither the host's CIC_* variables nor its
        # config file reach a test's users
        settings = load_settings({"devnet_dir": str(self.devnet.directory),
                                  "data_dir": str(data_dir), **overrides},
                                 config_file=None, environ={})
        imported = _run(get_importer("eth"), settings)
        if not imported.ok:
            pytest.fail(f"cic_seed: import failed\n{imported.render_text()}", pytrace=False)
        synced = run_sync(settings, "eth", SyncOptions(timeout=SYNC_TIMEOUT, poll=0.1))
        if not synced.ok:
            pytest.fail(f"cic_seed: sync failed\n{synced.render_text()}", pytrace=False)
        metadata = None
        if meta or (meta is None and "meta" in info):
            metadata = _run(get_importer("cic_meta"), settings)
            if not metadata.ok:
                pytest.fail(f"cic_seed: metadata import failed\n{metadata.render_text()}",
                            pytrace=False)
        made = SeededUsers(data_dir, settings, seed, list(DataDir(data_dir).users()), imported,
                           synced, metadata)
        if verify:
            made.verified = made.verify()
            if not made.verified.ok:
                pytest.fail(f"cic_seed: verify failed\n{made.verified.render_text()}",
                            pytrace=False)
        return made


def _run(importer: Any, settings: Settings) -> ImportResult:
    job = importer(settings)
    try:
        result: ImportResult = job.run()
        return result
    finally:
        job.close()


@pytest.fixture
def cic_seed(cic_devnet: Devnet, tmp_path: Path) -> Iterator[CicSeed]:
    """A factory seeding verified users on the session's devnet (see :class:`CicSeed`).

    The chain is snapshotted before the test and reverted after it: the next test finds the
    devnet as deployed, whatever this one seeded or sent."""
    rpc = _rpc(cic_devnet)
    snapshot = rpc.call("evm_snapshot")
    try:
        yield CicSeed(cic_devnet, tmp_path)
    finally:
        if not rpc.call("evm_revert", [snapshot]):
            raise RuntimeError(f"cic_seed: the devnet did not revert to snapshot {snapshot}")
