"""``cic-seed doctor``: is everything the importers need there? One line per check.

A failed check names the broken part and what to do. The checks read what the run will use:
the node and its chain id (against the chain spec: the data directory's manifest's unless one
is given), the registry and its entries, the token, the signer (a writer of the AccountsIndex,
gas, tokens), the faucet (its token, payout, funds and whether it takes the signer's
``giveTo``), and each configured service: metadata server, custodial engine, USSD gateway.

The faucet is read as the published CIC faucet (erc20-faucet 0.8) and ours both behave:
ours admits only writers to ``giveTo`` and counts its owner as one; the published one admits
any caller to ``giveTo`` (the recipient must be registered and unpaid) and keeps writers in an
``isWriter`` mapping that leaves out its ``owner()``. So the signer may pay from a faucet it
is a writer or the owner of, or one whose ``giveTo`` refuses a probe only for its recipient.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from cic_seeding.chain.connect import connect
from cic_seeding.chain.registry import ACCOUNTS_INDEX, FAUCET, TOKEN, CicNetwork, Token
from cic_seeding.chain.tx import Call
from cic_seeding.config import Settings
from cic_seeding.datadir import dataset_settings
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
    """Run every check it can; a failed step skips the checks that depend on it. The chain
    spec is the data directory's (``settings.data_dir``) unless given."""
    settings = dataset_settings(settings)
    findings: list[Finding] = []
    _chain(findings, settings)
    _services(findings, settings)
    return DoctorResult(findings)


def _chain(findings: list[Finding], settings: Settings) -> None:
    """The node, the registry, the token, the signer and the faucet."""
    holder: dict[str, CicNetwork] = {}

    def rpc() -> str:
        holder["net"] = connect(settings, signer=False)
        return f"{holder['net'].client.rpc.url} answers, head block {holder['net'].client.head()}"

    if not _run(findings, "rpc", rpc):
        return
    net = holder["net"]
    _run(findings, "chain id", lambda: _chain_id(settings, net))
    if not _run(findings, "registry", lambda: _registry(net)):
        return
    found = {name: _run(findings, f"registry {name}", lambda n=name: net.resolve(n))  # type: ignore[misc]
             for name in REQUIRED}
    found["token"] = _run(findings, "token", lambda: _token(net, settings.token_symbol))
    if not settings.keyfile:
        findings.append(Finding("signer", False, "no keyfile given (-y KEYFILE or --devnet)"))
        return
    if not _run(findings, "signer", lambda: _signer(settings, holder)):
        return
    signed = holder["signed"]
    me = signed.client.signer.address  # type: ignore[union-attr]
    # a check whose contract did not resolve above is left out: it would only say so again
    if found["AccountRegistry"]:
        _run(findings, "signer writes AccountsIndex",
             lambda: _writer(signed, net.accounts_index, me, "AccountsIndex"))
    if found["Faucet"] and found["token"]:
        _run(findings, "signer pays from Faucet",
             lambda: _faucet(signed, me, settings.token_symbol))
    _run(findings, "signer gas", lambda: _gas(signed, me))
    if found["token"]:
        _run(findings, "signer tokens", lambda: _tokens(signed, me, settings.token_symbol))


def _services(findings: list[Finding], settings: Settings) -> None:
    """Each configured service answers (metadata server, custodial engine, USSD gateway)."""
    from cic_seeding.custodial import unconfigured
    from cic_seeding.ussd.client import ussd_endpoint

    if settings.meta_url:
        _run(findings, "metadata server", lambda: _meta(settings))
    if unconfigured(settings) is None:
        _run(findings, "custodial engine", lambda: _engine(settings))
    if ussd_endpoint(settings) is not None:
        _run(findings, "USSD gateway", lambda: _ussd(settings))


def _chain_id(settings: Settings, net: CicNetwork) -> str:
    spec = ChainSpec.parse(settings.chain_spec)
    source = settings.source_of("chain_spec")
    net.check_chain_id(spec, source)
    return f"{spec.network_id} matches {spec} (from {source})"


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


#: Recipient of the faucet probe: an address no key is known for, so never a registered user
#: (were it one, the probe would pass, which is as good).
PROBE_RECIPIENT = "0x00000000000000000000000000000000c1c5d0c7"
#: A revert reason that says the caller may not (ours: "Writable: caller is not a writer").
_ACCESS_REFUSED = re.compile(r"writer|owner|access|ERR_AXX|unauthori[sz]ed|not allowed", re.I)


def _faucet(net: CicNetwork, me: str, symbol: str | None) -> str:
    """The faucet pays the run's token, holds at least one payout and takes the signer's
    ``giveTo``."""
    faucet, token = net.faucet, net.token(symbol)
    paid_token, amount = net.client.call_many([(faucet, FAUCET.fn("token"), ()),
                                               (faucet, FAUCET.fn("tokenAmount"), ())])
    if isinstance(paid_token, Exception) or isinstance(amount, Exception):
        raise CicSeedError(f"the registry's Faucet {faucet} does not answer token() and "
                           "tokenAmount(): it is no ERC20Faucet",
                           hint="register a faucet under 'Faucet' in the registry")
    if paid_token.lower() != token.address.lower():
        return f"{faucet} pays another token ({paid_token}): no faucet payouts in {token.symbol}"
    if amount == 0:
        return f"{faucet} pays 0 {token.symbol} (tokenAmount() is 0): no faucet payouts"
    held = net.client.call(token.address, TOKEN.fn("balanceOf"), faucet)
    if held < amount:
        raise CicSeedError(
            f"the faucet {faucet} holds {_units(held, token)}, less than one payout of "
            f"{_units(amount, token)}", hint=f"transfer or mint {token.symbol} to the faucet")
    return (f"{faucet} pays {_units(amount, token)} a user and holds {held // amount:,} "
            f"payouts; {_faucet_access(net, faucet, me)}")


def _faucet_access(net: CicNetwork, faucet: str, me: str) -> str:
    writer, owner = net.client.call_many([(faucet, FAUCET.fn("isWriter"), (me,)),
                                          (faucet, FAUCET.fn("owner"), ())])
    if writer is True:
        return "the signer is a writer"
    if isinstance(owner, str) and owner.lower() == me.lower():
        return "the signer is its owner"
    reason = net.client.revert_reason(Call(faucet, FAUCET.encode("giveTo", PROBE_RECIPIENT),
                                           gas=200_000)).removeprefix(": ")
    if reason and _ACCESS_REFUSED.search(reason):
        who = f"its owner {owner}" if isinstance(owner, str) else "its owner"
        raise CicSeedError(f"{me} may not call giveTo on the faucet {faucet} ({reason})",
                           hint=f"ask {who} to call addWriter({me}), or sign with a writer")
    if reason:
        return f"its giveTo takes any caller (a probe was refused only for its recipient: " \
               f"{reason})"
    return "its giveTo takes the signer (a probe went through)"


def _units(amount: int, token: Token) -> str:
    return f"{amount / 10**token.decimals:,.{min(token.decimals, 2)}f} {token.symbol}"


def _meta(settings: Settings) -> str:
    from cic_seeding.importers.meta import meta_client

    with meta_client(settings, retries=1) as client:
        try:
            client.get("0" * 64)
        except CicSeedError as exc:
            raise CicSeedError(
                exc.message,
                hint="start it (`cic-seed devnet up --meta`) or fix meta_url (CIC_META_URL); "
                "without it the cic_meta importer and the metadata checks cannot run") from None
        return f"{client.url} answers"


def _ussd(settings: Settings) -> str:
    """One protocol request a real gateway answers without making anything: a new session with
    no phone number (a gateway creates an account for a new phone number that dials it, so
    doctor dials from none). Any ``CON``/``END`` answer shows the protocol is spoken there; one
    that names the service code says the gateway does not serve ours."""
    import requests

    from cic_seeding.ussd.client import ussd_endpoint

    endpoint = ussd_endpoint(settings)
    assert endpoint is not None
    start = "start it (`cic-seed devnet up --ussd`) or fix ussd_url (CIC_USSD_URL)"
    form = {"sessionId": f"cic-seed-doctor-{uuid.uuid4().hex[:12]}",
            "serviceCode": endpoint.service_code, "phoneNumber": "", "text": ""}
    try:
        response = requests.post(endpoint.url, data=form, timeout=settings.rpc_timeout)
    except requests.RequestException as exc:
        raise CicSeedError(f"the USSD gateway {endpoint.url} does not answer "
                           f"({type(exc).__name__})", hint=start) from None
    body = response.text.strip()
    if response.status_code >= 500 or not body.startswith(("CON ", "END ")):
        raise CicSeedError(f"{endpoint.url} answered {response.status_code} "
                           f"{body[:120]!r}, not a USSD screen (CON/END)",
                           hint=f"is ussd_url the gateway's callback URL? {start}")
    if "service code" in body.lower():
        raise CicSeedError(f"the USSD gateway {endpoint.url} refuses the service code "
                           f"{endpoint.service_code}: {body[:160]!r}",
                           hint="set ussd_service_code (CIC_USSD_SERVICE_CODE) to one it serves")
    return f"{endpoint.url} answers the USSD protocol for {endpoint.service_code}"
