"""The compiled schema check (records/person.py ``_accepts``, fastjsonschema) against jsonschema
on the schema file: every document one accepts, the other accepts, and the reverse, on good
documents and thousands of damaged ones."""

from __future__ import annotations

import copy
import random
from typing import Any

import fastjsonschema

from cic_seeding.records.chainspec import ChainSpec
from cic_seeding.records.person import _accepts, _validator, build_person, schema_errors
from cic_seeding.records.vcard import VCard

ODD = [None, True, False, 0, -1, 1, 1.0, 1.5, 13, 32, 91, -181, 1899, 2101, 10**30, "", "x",
       "female", "0x" + "ab" * 20, "0x" + "ab" * 19, "8996:bloxberg", "8996 bloxberg", [], [""],
       ["0x" + "cd" * 20], {}, {"a": 1}, {"year": 2000}, {"month": 2}, {"day": 3}]


def _person(rng: random.Random) -> dict[str, Any]:
    card = VCard(given="Wanjiku", family="Otieno", phone=f"+2547{rng.randrange(10**8):08d}",
                 email=rng.choice([None, "w@example.org"]))
    return build_person(address="0x" + "".join(rng.choice("0123456789abcdef")
                                               for _ in range(40)),
                        chain=ChainSpec.parse("evm:byzantium:8996:bloxberg"), card=card,
                        gender=rng.choice(["female", "male", "other"]),
                        date_registered=rng.randrange(2**40),
                        date_of_birth=rng.choice([{}, {"year": 1990}, {"year": 1990, "month": 4},
                                                  {"year": 1990, "month": 4, "day": 30}]),
                        location={"area_name": "Kilifi", "latitude": -3.6,
                                  "longitude": 39.8},
                        products=["maize"])


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*at, i))
    return out


def _damage(doc: dict[str, Any], rng: random.Random) -> Any:
    """``doc`` with one to three things wrong (or not: some changes keep it valid)."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(doc))
        if not path:
            return rng.choice(ODD)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        how = rng.random()
        if how < 0.25 and isinstance(parent, dict):
            del parent[key]
        elif how < 0.4 and isinstance(parent, dict):
            parent[rng.choice(["extra", "year", "month", "day", "1:x", "x:1", "area_name"])] = \
                rng.choice(ODD)
        else:
            parent[key] = copy.deepcopy(rng.choice(ODD))
    return doc


def _fast(doc: Any) -> bool:
    try:
        _accepts()(doc)
        return True
    except fastjsonschema.JsonSchemaException:
        return False


def test_the_compiled_check_answers_as_jsonschema_does() -> None:
    rng = random.Random(21)
    good = [_person(rng) for _ in range(50)]
    cases = good + [_damage(rng.choice(good), rng) for _ in range(6000)]
    answers = [(_fast(d), _validator().is_valid(d)) for d in cases]
    disagree = [d for d, (fast, slow) in zip(cases, answers, strict=True) if fast != slow]
    assert disagree == [], disagree[:3]
    refused = sum(1 for _, slow in answers if not slow)
    assert refused > 3000 and len(cases) - refused > 50  # both answers were exercised


def test_a_refused_document_gets_jsonschema_s_reasons() -> None:
    doc = _person(random.Random(1))
    doc["date_of_birth"] = {"day": 3}
    doc["gender"] = "robot"
    assert schema_errors(doc) == ["date_of_birth: 'month' is a dependency of 'day'",
                                  "gender: 'robot' is not one of ['female', 'male', 'other']"]
    assert schema_errors(_person(random.Random(2))) == []
