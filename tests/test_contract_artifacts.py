"""The committed contract artifacts are current and expose the CIC interface selectors."""

import json
import pathlib
import subprocess

import pytest
from eth_utils import function_signature_to_4byte_selector, keccak

ROOT = pathlib.Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "cic_seeding" / "chain" / "artifacts"

CONTRACTS = [
    "AccountsIndex",
    "BatchFunder",
    "BatchReader",
    "ERC20Faucet",
    "FaucetStore",
    "GiftableToken",
    "Registry",
    "TokenUniqueSymbolIndex",
]

# Selectors fixed by the CIC interfaces (shared/reference/cic-interfaces.md) or by the
# CIC contracts other tools already decode (register, remove, gimme).
REQUIRED = {
    "Registry": {
        "addressOf(bytes32)": "0xbb34534c",
        "set(bytes32,address)": None,
        "identifier(uint256)": None,
        "identifierCount()": None,
        "owner()": "0x8da5cb5b",
    },
    "AccountsIndex": {
        "add(address)": "0x0a3b0a4f",
        "have(address)": "0x3ef25013",
        "entryCount()": None,
        "entry(uint256)": None,
        "addWriter(address)": None,
        "deleteWriter(address)": None,
        "remove(address)": "0x29092d0e",
        "isWriter(address)": None,
        "addMany(address[])": None,
    },
    "TokenUniqueSymbolIndex": {
        "addressOf(bytes32)": "0xbb34534c",
        "register(address)": "0x4420e486",
        "entryCount()": None,
        "entry(uint256)": None,
        "addWriter(address)": None,
        "isWriter(address)": None,
    },
    "GiftableToken": {
        "mintTo(address,uint256)": "0x449a52f8",
        "transfer(address,uint256)": "0xa9059cbb",
        "transferFrom(address,address,uint256)": "0x23b872dd",
        "approve(address,uint256)": "0x095ea7b3",
        "allowance(address,address)": "0xdd62ed3e",
        "balanceOf(address)": "0x70a08231",
        "decimals()": "0x313ce567",
        "symbol()": "0x95d89b41",
        "name()": "0x06fdde03",
        "totalSupply()": "0x18160ddd",
        "addWriter(address)": None,
        "deleteWriter(address)": None,
        "isWriter(address)": None,
    },
    "ERC20Faucet": {
        "giveTo(address)": "0x63e4bff4",
        "gimme()": "0xde82efb4",
        "tokenAmount()": "0xeec7faa1",
        "nextTime(address)": "0x3b1bd134",
        "setAmount(uint256)": None,
        "token()": "0xfc0c546a",
        "addWriter(address)": None,
        "isWriter(address)": None,
    },
    "FaucetStore": {
        "timeOf(address)": None,
        "setTime(address,uint256)": None,
        "addWriter(address)": None,
    },
    "BatchReader": {
        "batchRead(address[],bytes[])": None,
        "nativeBalances(address[])": None,
        "tokenBalances(address,address[])": None,
        "haveMany(address,address[])": None,
    },
    "BatchFunder": {
        "registerAndFund(address,address,address[],uint256[])": None,
        "registerAndMint(address,address,address[],uint256[])": None,
        "giveMany(address,address[])": None,
    },
}

REQUIRED_EVENTS = {
    "Registry": {"AddressKey(bytes32,address)"},
    "AccountsIndex": {"AddressAdded(address)", "AddressRemoved(address)"},
    "TokenUniqueSymbolIndex": {"AddressKey(bytes32,address)", "AddressAdded(address)"},
    "GiftableToken": {
        "Transfer(address,address,uint256)",
        "Approval(address,address,uint256)",
        "Mint(address,address,uint256)",
    },
    "ERC20Faucet": {"FaucetAmountChange(uint256)"},
}

CONSTRUCTORS = {
    "Registry": ["bytes32[]"],
    "GiftableToken": ["string", "string", "uint8", "uint256"],
    "ERC20Faucet": ["address", "address", "address"],
}


def load(name):
    return json.loads((ARTIFACTS / f"{name}.json").read_text())


def signature(entry):
    return "{}({})".format(entry["name"], ",".join(i["type"] for i in entry["inputs"]))


def test_committed_artifacts_match_sources():
    proc = subprocess.run(
        ["node", str(ROOT / "contracts" / "compile.mjs"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_artifact_set_is_complete():
    assert sorted(p.stem for p in ARTIFACTS.glob("*.json")) == sorted(CONTRACTS)
    assert (ARTIFACTS / "__init__.py").exists()


@pytest.mark.parametrize("name", CONTRACTS)
def test_artifact_shape(name):
    artifact = load(name)
    assert set(artifact) == {
        "contractName",
        "abi",
        "bytecode",
        "deployedBytecode",
        "compiler",
        "sourceSha256",
    }
    assert artifact["contractName"] == name
    for key in ("bytecode", "deployedBytecode"):
        code = artifact[key]
        assert code.startswith("0x") and len(code) > 2
        bytes.fromhex(code[2:])
    assert artifact["compiler"].startswith("0.8.")
    assert len(artifact["sourceSha256"]) == 64
    text = (ARTIFACTS / f"{name}.json").read_text()
    assert text == json.dumps(artifact, indent=2, sort_keys=True) + "\n"


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_required_selectors_present(name):
    functions = {signature(e) for e in load(name)["abi"] if e["type"] == "function"}
    for sig, expected in REQUIRED[name].items():
        assert sig in functions, f"{name} lacks {sig}"
        if expected is not None:
            assert "0x" + function_signature_to_4byte_selector(sig).hex() == expected, sig


@pytest.mark.parametrize("name", sorted(REQUIRED_EVENTS))
def test_required_events_present(name):
    events = {signature(e) for e in load(name)["abi"] if e["type"] == "event"}
    assert REQUIRED_EVENTS[name] <= events


def test_address_added_topic_and_encoding():
    topic = "0x" + keccak(text="AddressAdded(address)").hex()
    assert topic == "0xa226db3f664042183ee0281230bba26cbf7b5057e50aee7f25a175ff45ce4d7f"
    for name in ("AccountsIndex", "TokenUniqueSymbolIndex"):
        (event,) = [
            e for e in load(name)["abi"] if e["type"] == "event" and e["name"] == "AddressAdded"
        ]
        # The address is carried in the log data, as CIC's own consumers decode it.
        assert [i["indexed"] for i in event["inputs"]] == [False]
    (key_event,) = [
        e for e in load("Registry")["abi"] if e["type"] == "event" and e["name"] == "AddressKey"
    ]
    assert [i["indexed"] for i in key_event["inputs"]] == [True, False]


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
def test_constructor_arguments(name):
    (ctor,) = [e for e in load(name)["abi"] if e["type"] == "constructor"]
    assert [i["type"] for i in ctor["inputs"]] == CONSTRUCTORS[name]
