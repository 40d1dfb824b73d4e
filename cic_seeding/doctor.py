"""``cic-seed doctor``: is everything the importers need there? One line per check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, TOKEN, CicNetwork
from cic_seeding.config import Settings
from cic_seeding.errors import CicSeedError
from cic_seeding.records.chainspec import ChainSpec

REQUIRED = ("AccountRegistry", "TokenRegistry", "Faucet", "DefaultToken")


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str


@dataclass
class DoctorResult:
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    def render_text(self) -> str:
        return "\n".join(f"{'ok  ' if f.ok else 'FAIL'} {f.check}: {f.detail}"
                         for f in self.findings)


def _run(findings: list[Finding], check: str, fn: Callable[[], str]) -> bool:
    try:
        findings.append(Finding(check, True, fn()))
        return True
    except CicSeedError as exc:
        findings.append(Finding(check, False, str(exc)))
        return False


def doctor(settings: Settings) -> DoctorResult:
    """Run every check it can; a failed step skips the checks that depend on it."""
    findings: list[Finding] = []
    holder: dict[str, CicNetwork] = {}

    def rpc() -> str:
        holder["net"] = connect(settings, signer=False)
        return f"{holder['net'].client.rpc.url} answers, head block {holder['net'].client.head()}"

    if not _run(findings, "rpc", rpc):
        return DoctorResult(findings)
    net = holder["net"]
    client = net.client
    _run(findings, "chain id", lambda: _chain_id(settings, client.chain_id))
    if not _run(findings, "registry", lambda: _registry(net)):
        return DoctorResult(findings)
    for name in REQUIRED:
        _run(findings, f"registry {name}", lambda n=name: net.resolve(n))  # type: ignore[misc]
    _run(findings, "token", lambda: _token(net, settings.token_symbol))
    if not settings.keyfile:
        findings.append(Finding("signer", False, "no keyfile given (-y KEYFILE or --devnet)"))
        return DoctorResult(findings)
    if not _run(findings, "signer", lambda: _signer(settings, holder)):
        return DoctorResult(findings)
    signed = holder["signed"]
    me = signed.client.signer.address  # type: ignore[union-attr]
    _run(findings, "signer writes AccountsIndex",
         lambda: _writer(signed, net.accounts_index, me, "AccountsIndex"))
    _run(findings, "signer writes Faucet", lambda: _writer(signed, net.faucet, me, "faucet"))
    _run(findings, "signer gas", lambda: _gas(signed, me))
    _run(findings, "signer tokens", lambda: _tokens(signed, me, settings.token_symbol))
    _services(findings, settings)
    return DoctorResult(findings)


def _services(findings: list[Finding], settings: Settings) -> None:
    """Each configured devnet service answers (metadata server, custodial engine)."""
    from cic_seeding.custodial import unconfigured

    if settings.meta_url:
        _run(findings, "metadata server", lambda: _meta(settings))
    if unconfigured(settings) is None:
        _run(findings, "custodial engine", lambda: _engine(settings))


def _chain_id(settings: Settings, chain_id: int) -> str:
    spec = ChainSpec.parse(settings.chain_spec)
    if chain_id != spec.network_id:
        raise CicSeedError(f"the node's chain id is {chain_id}, the chain spec {spec} says "
                           f"{spec.network_id}", hint="fix --chain-spec / CIC_CHAIN_SPEC")
    return f"{chain_id} matches {spec}"


def _registry(net: CicNetwork) -> str:
    net.check_registry()
    return f"{net.registry} (code present)"


def _token(net: CicNetwork, symbol: str | None) -> str:
    t = net.token(symbol)
    return f"{t.symbol} at {t.address}, {t.decimals} decimals"


def _signer(settings: Settings, holder: dict[str, CicNetwork]) -> str:
    holder["signed"] = connect(settings)
    return f"{holder['signed'].client.signer.address} (keyfile {settings.keyfile})"  # type: ignore[union-attr]


def _writer(net: CicNetwork, contract: str, me: str, what: str) -> str:
    if not net.client.call(contract, ACCOUNTS_INDEX.fn("isWriter"), me):
        raise CicSeedError(f"{me} is not a writer of the {what} {contract}",
                           hint="ask its owner to call addWriter(signer), or sign with a writer")
    return f"yes ({contract})"


def _gas(net: CicNetwork, me: str) -> str:
    (wei,) = net.client.native_balances([me])
    if wei == 0:
        raise CicSeedError(f"{me} has no gas (native balance 0)",
                           hint="send it some native coin first")
    return f"{wei / 10**18:.4f} native"


def _tokens(net: CicNetwork, me: str, symbol: str | None) -> str:
    t = net.token(symbol)
    amount = net.client.call(t.address, TOKEN.fn("balanceOf"), me)
    if amount == 0:
        raise CicSeedError(f"{me} holds no {t.symbol}",
                           hint="opening balances are transfers from the signer: fund it, or "
                           "sync with --mint if it is a token writer")
    return f"{amount / 10**t.decimals:,.{min(t.decimals, 2)}f} {t.symbol}"


def _engine(settings: Settings) -> str:
    from cic_seeding.custodial import engine_client

    client = engine_client(settings)
    try:
        client.open()
        status = client.call("cic_custodial.engine.status", {}, timeout=10.0)
    finally:
        client.close()
    return f"{client.describe()} answers ({', '.join(f'{k}={v}' for k, v in status.items())})"


def _meta(settings: Settings) -> str:
    import requests

    from cic_seeding.importers.meta import meta_client

    with meta_client(settings) as client:
        url = client.url
    try:
        requests.get(url.rstrip("/") + "/" + "0" * 64, timeout=settings.rpc_timeout)
    except requests.RequestException as exc:
        raise CicSeedError(f"metadata server {url} does not answer: {exc}") from None
    return f"{url} answers"
