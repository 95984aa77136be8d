"""Typed records <-> JSON: dataclasses checked against their type hints, one NaN rule,
and a JSON Schema of each record for validators outside Python.

A result record (a dataclass) is written once, by the computation that makes it, and read
back into the same type: the report holds the records the computations return, and this
module alone turns them into JSON and back.

1. :func:`to_jsonable`: a dataclass becomes a dict of its fields in order, each encoded by
   its type hint: numpy arrays and scalars become lists and Python numbers; a float that is
   NaN or infinite becomes ``null`` (the one NaN rule: a number that does not exist is
   ``null`` in JSON and NaN in Python); a label (``Hashable``) and every dict key become
   text;
2. :func:`from_jsonable`: JSON data becomes the dataclass, every value checked against
   its field's type; ``null`` where a ``float`` is expected becomes NaN; a missing key, a
   key the record does not have or a value of the wrong type is a :class:`SchemaError`
   naming where it is (``report.dcd.clusters[1].size``); a field the record computes
   itself (``field(init=False)``) is checked and then recomputed;
3. :func:`json_schema`: the same types as a JSON Schema (draft 2020-12).

Types understood: ``bool``, ``int``, ``float``, ``str``, ``Any`` (any JSON value),
``Hashable`` (a label: text in JSON, read back as text), ``Optional[T]``, ``Union[A, B]``,
``List[T]``, ``Dict[K, T]`` (``K``: ``str``, ``int`` or ``Hashable``; keys are text in
JSON, ``int`` keys read back as numbers), ``Annotated[np.ndarray, F]`` (a numpy array whose
JSON form is ``F``, e.g. ``List[List[int]]``; read back as an array of ``F``'s number type)
and dataclasses of these. :class:`Record` gives a dataclass ``to_dict`` / ``from_dict``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import typing
from types import UnionType
from typing import Any, TypeVar, Union

import numpy as np

__all__ = ["SchemaError", "Record", "jsonable", "to_jsonable", "from_jsonable", "json_schema"]

T = TypeVar("T")
R = TypeVar("R", bound="Record")
_HASHABLE = (typing.Hashable, collections.abc.Hashable)


class SchemaError(ValueError):
    """JSON data that does not fit its record type; the message says where and why."""


class Record:
    """A dataclass whose JSON form is given by its type hints (mixed into result records)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form as Python data (NaN as None, labels and keys as text)."""
        return to_jsonable(self)

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any], where: str = "") -> R:
        """A record from parsed JSON, every key and type checked (:class:`SchemaError`)."""
        return from_jsonable(cls, data, where or cls.__name__)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def jsonable(x: Any) -> Any:
    """Any value as JSON-ready data: numpy as Python, NaN and infinities as None, records
    as dicts."""
    if isinstance(x, np.ndarray):
        return [jsonable(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return to_jsonable(x)
    return x


def _encode(x: Any, tp: Any) -> Any:
    """``x`` as JSON-ready data, led by its type hint ``tp``."""
    origin = typing.get_origin(tp)
    if x is None:
        return None
    if tp in _HASHABLE:
        return str(jsonable(x))
    if origin is list:
        (item,) = _args(tp) or (Any,)
        return [_encode(v, item) for v in x]
    if origin is dict:
        _, value = _args(tp) or (str, Any)
        return {str(jsonable(k)): _encode(v, value) for k, v in x.items()}
    if origin in (Union, UnionType):
        options = [o for o in _args(tp) if o is not type(None)]
        if len(options) == 1:
            return _encode(x, options[0])
    return jsonable(x)


def to_jsonable(record: Any) -> dict[str, Any]:
    """``record`` (a dataclass) as JSON-ready data: its fields in order, each encoded by its
    type hint (NaN as None, labels and keys as text)."""
    hints = _hints(type(record))
    return {f.name: _encode(getattr(record, f.name), hints[f.name])
            for f in dataclasses.fields(record)}


def _args(tp: Any) -> tuple:
    return typing.get_args(tp)


def _decode(data: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin is typing.Annotated:  # a numpy array and its JSON form
        array_type, form = _args(tp)[:2]
        if array_type is not np.ndarray:
            raise TypeError(f"{where}: Annotated[{array_type}, ...] is not one a record can hold")
        return np.asarray(_decode(data, form, where), dtype=_number_type(form))
    if tp in _HASHABLE:
        if isinstance(data, str):
            return data
        raise SchemaError(f"{where}: expected a label (text), got {data!r:.60}")
    if origin in (Union, UnionType):
        options = _args(tp)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _decode(data, option, where)
            except SchemaError as err:
                errors.append(str(err))
        raise SchemaError(errors[0] if len(errors) == 1 else
                          f"{where}: {data!r:.60} fits none of {tp}")
    if origin is list:
        if not isinstance(data, list):
            raise SchemaError(f"{where}: expected a list, got {type(data).__name__}")
        (item,) = _args(tp) or (Any,)
        return [_decode(v, item, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: expected an object, got {type(data).__name__}")
        key, value = _args(tp) or (str, Any)
        return {_key(k, key, where): _decode(v, value, f"{where}.{k}") for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_jsonable(tp, data, where)
    if tp is float:
        if data is None:
            return math.nan
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
    elif tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
    elif tp is bool or tp is str:
        if isinstance(data, tp):
            return data
    else:
        raise TypeError(f"{where}: type {tp} is not one a record can hold")
    raise SchemaError(f"{where}: expected {tp.__name__}, got {data!r:.60}")


def _key(key: str, tp: Any, where: str) -> Any:
    """A dict key read back as its type (``int`` keys are numbers written as text)."""
    if tp is int:
        try:
            return int(key)
        except ValueError:
            raise SchemaError(f"{where}: key {key!r} is not a whole number") from None
    if tp is str or tp in _HASHABLE:
        return str(key)
    raise TypeError(f"{where}: dict keys of type {tp} are not ones a record can hold")


def _number_type(form: Any) -> type:
    """The number type at the bottom of a JSON form such as ``List[List[int]]``."""
    while typing.get_origin(form) is list:
        (form,) = _args(form)
    if form not in (int, float, bool):
        raise TypeError(f"an array's JSON form must hold numbers, not {form}")
    return form


def from_jsonable(cls: type[T], data: Any, where: str = "report") -> T:
    """``data`` (parsed JSON) as a ``cls`` record, checked field by field."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{where}: {cls} is not a dataclass, so not a record type")
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SchemaError(f"{where}: unknown keys {unknown} (a {cls.__name__} has "
                          f"{list(fields)})")
    values = {}
    for name, f in fields.items():
        if name in data:
            value = _decode(data[name], hints[name], f"{where}.{name}")
            if f.init:  # a field the record computes is checked, then computed again
                values[name] = value
        elif (f.default is dataclasses.MISSING
              and f.default_factory is dataclasses.MISSING):
            raise SchemaError(f"{where}: missing key {name!r}")
    return cls(**values)


_PRIMITIVE: dict[type, dict[str, Any]] = {
    bool: {"type": "boolean"}, int: {"type": "integer"}, str: {"type": "string"},
    float: {"type": ["number", "null"]}}  # null: the NaN rule


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if tp is Any:
        return {}
    if origin is typing.Annotated:
        return _schema_of(_args(tp)[1], defs)
    if tp in _HASHABLE:
        return {"type": "string"}
    if tp in _PRIMITIVE:
        return dict(_PRIMITIVE[tp])
    if origin in (Union, UnionType):
        options = [o for o in _args(tp) if o is not type(None)]
        parts = [_schema_of(o, defs) for o in options]
        if type(None) in _args(tp):
            parts.append({"type": "null"})
        return {"anyOf": parts}
    if origin is list:
        (item,) = _args(tp) or (Any,)
        return {"type": "array", "items": _schema_of(item, defs)}
    if origin is dict:
        _, value = _args(tp) or (str, Any)
        return {"type": "object", "additionalProperties": _schema_of(value, defs)}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            hints = _hints(tp)
            fields = dataclasses.fields(tp)
            defs[name] = {
                "type": "object",
                "description": (tp.__doc__ or "").strip().split("\n")[0],
                "properties": {f.name: _schema_of(hints[f.name], defs) for f in fields},
                "required": [f.name for f in fields
                             if f.default is dataclasses.MISSING
                             and f.default_factory is dataclasses.MISSING],
                "additionalProperties": False,
            }
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"type {tp} is not one a record can hold")


def json_schema(cls: type, title: str = "") -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of ``cls``'s JSON form."""
    defs: dict[str, Any] = {}
    root = _schema_of(cls, defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": title or cls.__name__, **root, "$defs": defs}
