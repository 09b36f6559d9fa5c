"""Minimal valid instances of the installed anthropic SDK's own types, built from their hints.

``build(tp)`` makes one JSON value for a type annotation: a pydantic model (a response type)
gets every field, required or not, so that nothing an answer may carry goes unchecked; a
TypedDict (a request param) gets its required keys; a union gets its first member (except
``None``), a ``Literal`` its first value, a list one item. The depth is capped, so recursive
types (a tool result holding blocks holding...) end. ``members(union)`` lists a union's
members (through ``Annotated`` and type aliases), which is how the contract test walks the SDK.
"""

from __future__ import annotations

import datetime
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NotRequired, Required, Union, get_args, get_origin

import pydantic
from typing_extensions import is_typeddict

_MAX_DEPTH = 8
_LEAF = {str: "s", int: 1, float: 0.5, bool: True, object: "v"}


def members(union: Any) -> list[Any]:
    """The members of a union type (``Annotated`` and ``Optional`` unwrapped, ``None`` left out)."""
    tp = _strip(union)
    if get_origin(tp) in (Union, types.UnionType):
        return [m for arg in get_args(tp) for m in members(arg)]
    return [] if tp is type(None) else [tp]


def tag(model: Any) -> str:
    """The ``type`` value of a pydantic model or TypedDict."""
    if isinstance(model, type) and issubclass(model, pydantic.BaseModel):
        annotation = model.model_fields["type"].annotation
    else:
        annotation = typing.get_type_hints(model, include_extras=True)["type"]
    return str(get_args(_strip(annotation))[0])


def build(tp: Any, depth: int = 0) -> Any:
    tp = _strip(tp)
    origin = get_origin(tp)
    if origin is Literal:
        return get_args(tp)[0]
    if origin in (Union, types.UnionType):
        options = members(tp)
        simple = [o for o in options if not _is_list(o)] or options
        return build(simple[0], depth)
    if _is_list(tp):
        args = get_args(tp)
        return [build(args[0], depth + 1)] if args and depth < _MAX_DEPTH else []
    if origin in (dict, Mapping) or tp is dict:
        return {"k": "v"}
    if tp in _LEAF:
        return _LEAF[tp]
    if tp is datetime.datetime:
        return "2026-01-01T00:00:00Z"
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        fields = tp.model_fields
        return {
            name: build(field.annotation, depth + 1)
            for name, field in fields.items()
            if depth < _MAX_DEPTH or field.is_required()
        }
    if is_typeddict(tp):
        return {name: build(hint, depth + 1) for name, hint in required_keys(tp).items()}
    raise TypeError(f"no builder for {tp!r}")


def required_keys(typed_dict: Any) -> dict[str, Any]:
    """The required keys of a TypedDict and their types (``Required[...]``, or a total class's)."""
    hints = typing.get_type_hints(typed_dict, include_extras=True)
    total = getattr(typed_dict, "__total__", True)
    out = {}
    for name, hint in hints.items():
        origin = get_origin(hint)
        if origin is Required or (total and origin is not NotRequired):
            out[name] = hint
    return out


def _strip(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated or origin in (Required, NotRequired):
            tp = get_args(tp)[0]
        elif isinstance(tp, typing.TypeAliasType if hasattr(typing, "TypeAliasType") else ()):
            tp = tp.__value__
        else:
            return tp


def _is_list(tp: Any) -> bool:
    origin = get_origin(tp)
    if origin in (list, Iterable, Sequence, tuple):
        return True
    name = getattr(origin or tp, "__name__", "")
    return name in ("SequenceNotStr", "Iterable")
