"""The CIC person document: building, checking, and reading identities out of it."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import TYPE_CHECKING, Any

import fastjsonschema

if TYPE_CHECKING:
    import jsonschema

from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.phone import is_e164
from cic_seeding.records.vcard import VCard, decode_vcard, encode_vcard


@functools.cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(resources.files("cic_seeding.records")
                                        .joinpath("person.schema.json").read_text("utf-8"))
    return schema


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    """jsonschema, for the reasons a document is refused (imported here: ~35 ms that a run
    whose documents all fit never pays)."""
    import jsonschema

    schema = _schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _draft7(node: Any) -> Any:
    """The schema in draft 7's words (fastjsonschema's newest draft): ``dependentRequired``
    was draft 7's array form of ``dependencies``; the schema uses nothing else newer."""
    if isinstance(node, dict):
        return {("dependencies" if k == "dependentRequired" else k): _draft7(v)
                for k, v in node.items()
                if k not in ("$schema", "$id")}
    if isinstance(node, list):
        return [_draft7(v) for v in node]
    return node


@functools.cache
def _accepts() -> Any:
    """The schema compiled to Python (fastjsonschema): ~20x jsonschema's speed, no messages.
    It only ever says yes; a document it refuses goes to jsonschema for the reasons (a unit
    test holds the two to the same answers)."""
    return fastjsonschema.compile({"$schema": "http://json-schema.org/draft-07/schema#",
                                   **_draft7(_schema())})


def schema_errors(doc: Any) -> list[str]:
    """Every way ``doc`` breaks the person schema (empty: it fits)."""
    try:
        _accepts()(doc)
        return []
    except fastjsonschema.JsonSchemaException:
        pass
    return [f"{'/'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
            for err in sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))]


def build_person(*, address: str, chain: ChainSpec, card: VCard, gender: str,
                 date_registered: int, date_of_birth: dict[str, int], location: dict[str, Any],
                 products: list[str]) -> dict[str, Any]:
    return {
        "date_of_birth": date_of_birth,
        "date_registered": date_registered,
        "gender": gender,
        "identities": {chain.engine: {chain.fork: {chain.network_key: [address]}}},
        "location": location,
        "products": products,
        "vcard": encode_vcard(card),
    }


def dumps(doc: dict[str, Any]) -> bytes:
    """Canonical bytes of a document: sorted keys, compact, so output is reproducible."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def person_errors(doc: Any) -> list[str]:
    """Every way ``doc`` breaks the person schema, vCard and phone rules (empty: valid)."""
    errors = schema_errors(doc)
    if errors:
        return errors
    try:
        card = decode_vcard(doc["vcard"])
    except ValueError as exc:
        return [f"vcard: {exc}"]
    if not is_e164(card.phone):
        errors.append(f"vcard: TEL {card.phone!r} is not E.164")
    return errors


def identity_addresses(doc: dict[str, Any], chain: ChainSpec) -> list[str]:
    return list(doc.get("identities", {}).get(chain.engine, {}).get(chain.fork, {})
                .get(chain.network_key, []))


def add_identity(doc: dict[str, Any], chain: ChainSpec, address: str, *, copy: bool = True
                 ) -> dict[str, Any]:
    """A copy of ``doc`` (``doc`` itself unless ``copy``) that also holds ``address`` on
    ``chain`` (no duplicates)."""
    out: dict[str, Any] = json.loads(json.dumps(doc)) if copy else doc
    addresses = (out.setdefault("identities", {}).setdefault(chain.engine, {})
                 .setdefault(chain.fork, {}).setdefault(chain.network_key, []))
    if address not in addresses:
        addresses.append(address)
    return out


def phone_of(doc: dict[str, Any]) -> str:
    return decode_vcard(doc["vcard"]).phone
