"""JSON Schema of the ``tlswatch/1`` record, derived from the model classes.

The committed file ``tlswatch/schema/tlswatch-1.schema.json`` is this module's output;
regenerate it with ``python -m tlswatch.record_schema > tlswatch/schema/tlswatch-1.schema.json``
and add a line to ``docs/schema-changelog.md``. A test keeps the two equal.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from importlib import resources
from typing import Any

from tlswatch.failures import Verdict
from tlswatch.model import SCHEMA, InputRecord, Record, RunRecord

__all__ = ["SCHEMA_FILE", "build_schema", "load_schema"]

SCHEMA_FILE = "tlswatch-1.schema.json"

_DESCRIPTIONS = {
    "Record.id": "Deterministic: hash of source, target/flow, vantage, attempt "
    "(and capture file + first packet time).",
    "Record.time": "RFC 3339 UTC time of the handshake (not of the analysis).",
    "Record.chain": "Certificates as presented, leaf first. Peer data: treat as hostile.",
    "Record.validation": "One entry per trust store the chain was judged against.",
    "Record.verdict": "Is the network interfering? See docs/verdicts.md.",
    "Record.outcome": "stage/class[:detail] of what was seen. See docs/verdicts.md.",
    "Record.anomalies": "Things a peer or input did wrong that did not stop the observation.",
    "RunRecord.stores": "Trust stores used, each with its version.",
    "InputRecord.complete": "The analysis of this file finished: all its records are above.",
    "InputRecord.partial": "The file was truncated or damaged: read up to the damage.",
    "InputRecord.anomalies": "Counts of what was odd in the file or on the wire, by name.",
}


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        inner = [a for a in args if a is not type(None)]
        sub = _type_schema(inner[0], defs)
        return {"anyOf": [sub, {"type": "null"}]} if type(None) in args else sub
    if origin is tuple:
        args = typing.get_args(tp)
        if args and args[-1] is Ellipsis:
            return {"type": "array", "items": _type_schema(args[0], defs)}
        return {"type": "array", "prefixItems": [_type_schema(a, defs) for a in args]}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(typing.get_args(tp)[1],
                                                                      defs)}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            defs[name] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    return {
        str: {"type": "string"},
        int: {"type": "integer"},
        float: {"type": "number"},
        bool: {"type": "boolean"},
    }.get(tp, {})


def _object_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name], defs)
        desc = _DESCRIPTIONS.get(f"{cls.__name__}.{f.name}")
        if desc:
            prop = {**prop, "description": desc}
        props[f.name] = prop
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default:
            required.append(f.name)
    return {"type": "object", "properties": props, "required": required}


def build_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    record = _object_schema(Record, defs)
    record["properties"]["schema"] = {"const": SCHEMA}
    record["properties"]["verdict"] = {"enum": [v.value for v in Verdict],
                                       "description": _DESCRIPTIONS["Record.verdict"]}
    record["properties"]["outcome"] = {"type": "string", "pattern": r"^[a-z]+/[a-z_]+(:.*)?$",
                                       "description": _DESCRIPTIONS["Record.outcome"]}
    record["required"] = sorted({*record["required"], "schema", "verdict", "outcome"})
    run = _object_schema(RunRecord, defs)
    run["properties"]["kind"] = {"const": "run"}
    run["properties"]["schema"] = {"const": SCHEMA}
    run["properties"]["stores"] = {
        "type": "array",
        "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                   "version": {"type": "string"}},
                  "required": ["name", "version"]},
        "description": _DESCRIPTIONS["RunRecord.stores"],
    }
    run["required"] = sorted({*run["required"], "kind", "schema"})
    inp = _object_schema(InputRecord, defs)
    inp["properties"]["kind"] = {"const": "input"}
    inp["properties"]["schema"] = {"const": SCHEMA}
    inp["required"] = sorted({*inp["required"], "kind", "schema"})
    defs["InputRecord"] = inp
    defs["Record"] = record
    defs["RunRecord"] = run
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://tlswatch.invalid/schema/tlswatch-1.schema.json",
        "title": "tlswatch/1 record (one JSON object per line)",
        "oneOf": [{"$ref": "#/$defs/RunRecord"}, {"$ref": "#/$defs/Record"},
                  {"$ref": "#/$defs/InputRecord"}],
        "$defs": dict(sorted(defs.items())),
    }


def load_schema() -> dict[str, Any]:
    """The committed schema file shipped with the package."""
    text = resources.files("tlswatch").joinpath("schema", SCHEMA_FILE).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


if __name__ == "__main__":
    print(json.dumps(build_schema(), indent=2, sort_keys=False))
