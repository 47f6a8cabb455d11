"""Records as compact JSON text: byte for byte ``json.dumps(to_dict(record), ensure_ascii=True,
separators=(",", ":"))``, at a fraction of its cost.

Three savings: the C encoder is built once (``json.dumps`` builds one per call); it walks the
record's parts itself, asking :func:`_fields_of` only for each dataclass's field values
(instead of :func:`~tlswatch.model.to_plain` copying the whole tree into dicts and lists
first); and a judged chain, the bulk of a record, is encoded once per chain the judge hands
out (its cached tuple: identity names it) and spliced into every record that presents it.
"""

from __future__ import annotations

import dataclasses
import json
import json.encoder
import operator
from collections.abc import Callable
from typing import Any, Final

from tlswatch.model import Record

__all__ = ["dumps", "record_line"]

# class -> (field names, a getter of all their values as a tuple)
_FIELDS: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}


def _fields_of(obj: Any) -> dict[str, Any]:
    """The encoder's ``default``: a dataclass as the dict of its fields (values as they are:
    the encoder comes back here for nested ones), as ``to_plain`` gives it."""
    cls = obj.__class__
    hit = _FIELDS.get(cls)
    if hit is None:
        if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
            raise TypeError(f"Object of type {cls.__name__} is not JSON serializable")
        names = tuple(f.name for f in dataclasses.fields(obj))
        one = operator.attrgetter(*names)
        get: Callable[[Any], tuple[Any, ...]] = one if len(names) > 1 else lambda o: (one(o),)
        hit = _FIELDS[cls] = (names, get)
    names, get = hit
    return dict(zip(names, get(obj), strict=True))


def _make_dumps() -> Callable[[Any], str]:
    make = getattr(json.encoder, "c_make_encoder", None)  # (the C encoder json.dumps uses)
    if make is None:  # (a Python without it: json's own pure-Python path)
        return json.JSONEncoder(ensure_ascii=True, separators=(",", ":"),
                                default=_fields_of).encode
    # The arguments JSONEncoder.iterencode passes for json.dumps(ensure_ascii=True,
    # separators=(",", ":")); markers None: records hold no cycles to check for.
    encode = make(None, _fields_of, json.encoder.encode_basestring_ascii, None, ":", ",",
                  False, False, True)

    def dumps(obj: Any) -> str:
        return "".join(encode(obj, 0))

    return dumps


#: ``json.dumps(to_plain(obj), ensure_ascii=True, separators=(",", ":"))`` (ensure_ascii
#: keeps hostile peer strings, control characters and bidi marks, escaped).
dumps: Final = _make_dumps()

_NAMES: Final = tuple(f.name for f in dataclasses.fields(Record))
_AT: Final = _NAMES.index("chain")
_HEAD: Final = _NAMES[:_AT]
_TAIL: Final = _NAMES[_AT + 1:]
_GET_ALL: Final = operator.attrgetter(*_NAMES)
_GET_HEAD: Final = operator.attrgetter(*_HEAD)
_GET_TAIL: Final = operator.attrgetter(*_TAIL)
_CHAINS: dict[int, tuple[object, str]] = {}  # id(chain tuple) -> (the tuple, its JSON)
_CHAINS_MAX: Final = 1024


def _object(names: tuple[str, ...], values: tuple[Any, ...]) -> str:
    """The JSON object of the fields that are not None."""
    return dumps({n: v for n, v in zip(names, values, strict=True) if v is not None})


def record_line(rec: Record) -> str:
    """The JSON text of ``rec`` (no newline), as ``dumps(to_dict(rec))`` gives it."""
    chain = rec.chain
    if not chain:  # (nothing to splice: () is "[]", None is left out as to_dict does)
        return _object(_NAMES, _GET_ALL(rec))
    # The cache holds each tuple it names: no other object can have its id meanwhile.
    hit = _CHAINS.get(id(chain))
    if hit is None:
        if len(_CHAINS) >= _CHAINS_MAX:
            _CHAINS.clear()
        hit = _CHAINS[id(chain)] = (chain, dumps(chain))
    head = _object(_HEAD, _GET_HEAD(rec))[1:-1]  # (members without the braces)
    tail = _object(_TAIL, _GET_TAIL(rec))[1:-1]
    return "{" + ",".join(p for p in (head, '"chain":' + hit[1], tail) if p) + "}"
