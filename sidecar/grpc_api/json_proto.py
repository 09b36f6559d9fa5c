"""Anthropic JSON ⇄ protobuf, one walk over the message descriptors, losing nothing.

The proto mirrors the JSON (see the comment at the top of ``messages.proto``): field names are
the JSON keys, a union is a ``oneof`` whose case names are the JSON ``type`` values, an enum
value is the JSON string upper-cased behind the enum's prefix (``STOP_REASON_END_TURN``). So
one generic walk converts both ways, driven by a plan built once per message type (``_plan``);
the few shapes that differ are named in ``_FROM_JSON`` / ``_TO_JSON`` (a ``message_delta``'s
inlined ``delta``, a content block delta's one-field cases, an ``error`` event's body, the
system prompt as ``system_blocks``, defaults the API fills in).

JSON → proto (``message_from_json``, ``event_from_json``: a relayed answer for a gRPC caller;
``request_from_json`` for clients) never drops anything. ``_fill`` returns what it could not
carry, in the JSON's own shape; a message with an ``extra_json`` field keeps it there, a
union whose typed case cannot carry an object whole keeps the leftover in its ``extra_json``
(or, with no such field, the whole object in its ``raw`` case), and an object of a ``type``
the proto does not know goes to ``raw``. An enum value the proto does not know is
``*_UNSPECIFIED`` with the value in ``raw_<field>``. A JSON ``null`` is "not set", as in
proto3.

proto → JSON (``request_to_json``: the body a gRPC request becomes; ``message_to_json``,
``event_to_json``: for clients and tests) writes the typed fields, inlines ``raw`` cases and
deep-merges every ``extra_json`` over them. Zero-valued integers and booleans are written
(``index: 0``, ``input_tokens: 0``), empty strings are not, except for the fields whose empty
value means something (``text: ""`` in a block that starts empty). ``request_to_json`` also
says whether the request used the escape hatch (a ``raw`` case or an ``extra_json``); a bad
JSON string there is an ``InvalidRequestError`` naming the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import orjson
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message_factory import GetMessageClass

from sidecar.errors import InvalidRequestError
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb
from sidecar.grpc_api.struct_json import struct_to_dict, value_to_py

__all__ = [
    "event_from_json",
    "event_to_json",
    "message_from_json",
    "message_to_json",
    "request_from_json",
    "request_to_json",
]

_EXTRA = "extra_json"
# Strings written even when empty: an empty value is a real value there.
_ALWAYS = frozenset({"text", "thinking", "signature", "partial_json", "data"})
# Repeated fields written even when empty.
_ALWAYS_LIST = frozenset({(pb.Message.DESCRIPTOR.full_name, "content")})
# The constant `type` of a message that is not a union case.
_TAGS = {pb.Message.DESCRIPTOR.full_name: "message"}
_OK = object()

# What a field holds (a plan's per-field code: compared by identity on the hot path).
_STRING, _BOOL, _INT, _DOUBLE, _ENUM = "string", "bool", "int", "double", "enum"
_MESSAGE, _STRUCT, _VALUE = "message", "struct", "value"
_SCALARS = {
    FieldDescriptor.TYPE_STRING: _STRING,
    FieldDescriptor.TYPE_BOOL: _BOOL,
    FieldDescriptor.TYPE_INT32: _INT,
    FieldDescriptor.TYPE_INT64: _INT,
    FieldDescriptor.TYPE_DOUBLE: _DOUBLE,
    FieldDescriptor.TYPE_FLOAT: _DOUBLE,
    FieldDescriptor.TYPE_ENUM: _ENUM,
}
_INT_RANGE = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# --------------------------------------------------------------------------- plans


@dataclasses.dataclass(slots=True)
class _Field:
    key: str  # the JSON key = the field name
    kind: str  # _STRING, _INT, ..., _MESSAGE, _STRUCT, _VALUE
    repeated: bool
    cls: Any = None  # a message field's class
    int_range: tuple[int, int] = (0, 0)
    enum_by_name: dict[str, int] = dataclasses.field(default_factory=dict)  # "end_turn" -> 1
    enum_by_number: dict[int, str] = dataclasses.field(default_factory=dict)  # 1 -> "end_turn"
    raw: str | None = None  # an enum's raw_<field> companion


@dataclasses.dataclass(slots=True)
class _Plan:
    kind: str  # _MESSAGE, _STRUCT, _VALUE
    fields: dict[str, _Field]  # JSON key -> field (not a union's cases)
    by_number: dict[int, _Field | None]  # field number -> field (None: skipped when writing)
    union: str | None  # the oneof of a union message
    cases: dict[str, str]  # JSON type -> case name
    raw: str | None  # the RawJson case of a union
    extra: bool  # has an extra_json field
    raw_enums: list[tuple[str, str]]  # (enum field, its raw_<field> companion)
    defaults: list[tuple[str, Any]]  # written when not set: zero ints and bools, _ALWAYS strings
    tag: str | None
    from_json: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    to_json: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _make_plan(cls)
    return plan


def _make_plan(cls: Any) -> _Plan:
    desc = cls.DESCRIPTOR
    full_name = desc.full_name
    kind = {struct_pb2.Struct.DESCRIPTOR.full_name: _STRUCT}.get(full_name, _MESSAGE)
    if full_name == struct_pb2.Value.DESCRIPTOR.full_name:
        kind = _VALUE
    names = {f.name for f in desc.fields}
    union: str | None = None
    cases: dict[str, str] = {}
    raw: str | None = None
    for oneof in desc.oneofs:
        inside = {f.name for f in oneof.fields}
        if inside == {oneof.name[1:]}:
            continue  # the synthetic oneof of a proto3 `optional` field
        if names - inside <= {_EXTRA}:  # every field is a case: a union on `type`
            union = oneof.name
            for f in oneof.fields:
                if f.message_type is not None and f.message_type.full_name == _RAW_NAME:
                    raw = f.name
                else:
                    cases[f.name] = f.name
    fields: dict[str, _Field] = {}
    by_number: dict[int, _Field | None] = {}
    raw_enums: list[tuple[str, str]] = []
    defaults: list[tuple[str, Any]] = []
    for f in desc.fields:
        by_number[f.number] = None
        if f.name == _EXTRA or f.name in cases or f.name == raw:
            continue
        if f.name.startswith("raw_") and f.name[4:] in names:
            raw_enums.append((f.name[4:], f.name))
            continue
        spec = _field(f)
        fields[f.name] = by_number[f.number] = spec
        if spec.repeated:
            if (full_name, f.name) in _ALWAYS_LIST:
                defaults.append((f.name, []))
        elif not f.has_presence and spec.kind in (_INT, _BOOL):
            defaults.append((f.name, 0 if spec.kind is _INT else False))
        elif not f.has_presence and spec.kind is _STRING and f.name in _ALWAYS:
            defaults.append((f.name, ""))
    for key, raw_name in raw_enums:
        fields[key].raw = raw_name
    return _Plan(
        kind,
        fields,
        by_number,
        union,
        cases,
        raw,
        _EXTRA in names,
        raw_enums,
        defaults,
        _TAGS.get(full_name),
        _FROM_JSON.get(full_name),
        _TO_JSON.get(full_name),
    )


def _field(f: FieldDescriptor) -> _Field:
    repeated = f.is_repeated
    if f.message_type is not None:
        cls = GetMessageClass(f.message_type)
        sub = {struct_pb2.Struct.DESCRIPTOR.full_name: _STRUCT}
        sub[struct_pb2.Value.DESCRIPTOR.full_name] = _VALUE
        return _Field(f.name, sub.get(f.message_type.full_name, _MESSAGE), repeated, cls)
    kind = _SCALARS[f.type]
    spec = _Field(f.name, kind, repeated, int_range=_INT_RANGE.get(f.type, (0, 0)))
    if kind is _ENUM:
        enum = f.enum_type
        assert enum is not None
        prefix = enum.values[0].name.removesuffix("UNSPECIFIED")  # ROLE_UNSPECIFIED -> ROLE_
        for value in enum.values[1:]:
            json_name = value.name.removeprefix(prefix).lower()
            spec.enum_by_name[json_name] = value.number
            spec.enum_by_number[value.number] = json_name
    return spec


# --------------------------------------------------------------------------- JSON -> proto


def _fill(msg: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """Write ``obj`` into ``msg``; return what could not be carried (empty: everything was)."""
    plan = _plan(type(msg))
    if plan.from_json is not None:
        return plan.from_json(msg, obj)
    if plan.union is not None:
        return _fill_union(msg, obj, plan)
    left: dict[str, Any] = {}
    fields = plan.fields
    for key, value in obj.items():
        if value is None:
            continue
        field = fields.get(key)
        if field is None:
            if not (key == "type" and value == plan.tag):
                left[key] = value
            continue
        rest = _set(msg, field, value)
        if rest is not _OK:
            left[key] = rest
    if left and plan.extra:
        msg.extra_json = _dumps(left)
        return {}
    return left


def _fill_union(msg: Any, obj: dict[str, Any], plan: _Plan) -> dict[str, Any]:
    kind = obj.get("type")
    case = plan.cases.get(kind) if isinstance(kind, str) else None
    if case is not None:
        child = getattr(msg, case)
        child.SetInParent()
        left = _fill(child, {k: v for k, v in obj.items() if k != "type"})
        if not left:
            return {}
        if plan.extra:
            msg.extra_json = _dumps(left)
            return {}
        msg.ClearField(case)
    if plan.raw is None:
        return obj
    raw = getattr(msg, plan.raw)
    raw.type = kind if isinstance(kind, str) else ""
    raw.json = _dumps(obj)
    return {}


def _set(msg: Any, field: _Field, value: Any) -> Any:
    """Set one field from its JSON value; ``_OK``, or the part of the value not carried."""
    kind = field.kind
    if field.repeated:
        if not isinstance(value, list):
            return value
        target = getattr(msg, field.key)
        for item in value:
            if kind is _MESSAGE:
                if not isinstance(item, dict) or _fill(target.add(), item):
                    msg.ClearField(field.key)
                    return value
            elif kind is _STRUCT:
                if not isinstance(item, dict):
                    msg.ClearField(field.key)
                    return value
                target.add().update(item)
            elif _scalar_ok(field, item):
                target.append(item)
            else:
                msg.ClearField(field.key)
                return value
        return _OK
    if kind is _MESSAGE:
        if not isinstance(value, dict):
            return value
        child = getattr(msg, field.key)
        child.SetInParent()
        left = _fill(child, value)
        if left and _plan(field.cls).union is not None:
            msg.ClearField(field.key)
            return value
        return left or _OK
    if kind is _STRUCT:
        if not isinstance(value, dict):
            return value
        child = getattr(msg, field.key)
        child.SetInParent()
        child.update(value)
        return _OK
    if kind is _VALUE:
        _to_value(value, getattr(msg, field.key))
        return _OK
    if kind is _ENUM:
        if not isinstance(value, str):
            return value
        number = field.enum_by_name.get(value)
        if number is not None:
            setattr(msg, field.key, number)
        elif field.raw is None:
            return value
        if field.raw is not None:
            setattr(msg, field.raw, value)
        return _OK
    if not _scalar_ok(field, value):
        return value
    setattr(msg, field.key, value)
    return _OK


def _scalar_ok(field: _Field, value: Any) -> bool:
    kind = field.kind
    if kind is _STRING:
        return type(value) is str
    if kind is _INT:
        low, high = field.int_range
        return type(value) is int and low <= value <= high
    if kind is _BOOL:
        return type(value) is bool
    return type(value) is float or type(value) is int  # _DOUBLE


def _to_value(value: Any, target: struct_pb2.Value) -> None:
    if value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int | float):
        target.number_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, dict):
        target.struct_value.SetInParent()
        target.struct_value.update(value)
    else:
        target.list_value.SetInParent()
        target.list_value.extend(value)


# Content block delta cases: JSON delta type -> the delta's one field.
_DELTA_FIELDS = {
    "text_delta": "text",
    "input_json_delta": "partial_json",
    "thinking_delta": "thinking",
    "signature_delta": "signature",
}


def _fill_block_delta(msg: pb.ContentBlockDeltaEvent, obj: dict[str, Any]) -> dict[str, Any]:
    left: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "index" and type(value) is int and -(2**31) <= value < 2**31:
            msg.index = value
        elif key == "delta" and isinstance(value, dict):
            kind = value.get("type")
            field = _DELTA_FIELDS.get(kind) if isinstance(kind, str) else None
            text = value.get(field) if field is not None else None
            if isinstance(text, str) and len(value) == 2:
                setattr(msg, str(kind), text)
            elif kind == "citations_delta" and isinstance(value.get("citation"), dict):
                msg.citations_delta.SetInParent()
                msg.citations_delta.update(value["citation"])
                if len(value) > 2:
                    rest = {k: v for k, v in value.items() if k not in ("type", "citation")}
                    left["delta"] = rest
            else:
                msg.raw_delta.type = kind if isinstance(kind, str) else ""
                msg.raw_delta.json = _dumps(value)
        elif value is not None:
            left[key] = value
    return left


def _fill_message_delta(msg: pb.MessageDeltaEvent, obj: dict[str, Any]) -> dict[str, Any]:
    fields = _plan(type(msg)).fields
    left: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "delta" and isinstance(value, dict):
            inner: dict[str, Any] = {}
            for name, item in value.items():
                field = fields.get(name)
                if item is None:
                    continue
                if field is None or name == "usage":
                    inner[name] = item
                elif (rest := _set(msg, field, item)) is not _OK:
                    inner[name] = rest
            if inner:
                left["delta"] = inner
        elif key == "usage" and isinstance(value, dict):
            if (rest := _set(msg, fields["usage"], value)) is not _OK:
                left["usage"] = rest
        elif value is not None:
            left[key] = value
    return left


def _fill_error(msg: pb.ErrorEvent, obj: dict[str, Any]) -> dict[str, Any]:
    body = obj.get("error")
    if not isinstance(body, dict):
        return obj
    left = {k: v for k, v in obj.items() if k != "error"}
    plan = _plan(type(msg))
    rest: dict[str, Any] = {}
    for key, value in body.items():
        field = plan.fields.get(key)
        if value is None:
            continue
        if field is None or _set(msg, field, value) is not _OK:
            rest[key] = value
    if rest:
        left["error"] = rest
    return left


def message_from_json(doc: Any) -> pb.Message:
    """An Anthropic ``message`` object (parsed) as a proto ``Message``, nothing left out."""
    out = pb.Message()
    if isinstance(doc, dict):
        _fill(out, doc)
    return out


def request_from_json(doc: dict[str, Any]) -> spb.CreateMessageRequest:
    """An Anthropic request body as a ``CreateMessageRequest``: typed where the proto models
    it, the rest in ``raw`` blocks and ``extra_json`` (for clients that hold JSON, and tests)."""
    out = spb.CreateMessageRequest()
    _fill(out, doc)
    return out


def event_from_json(doc: Any) -> pb.StreamEvent:
    """One Anthropic stream event (parsed) as a proto ``StreamEvent``, nothing left out."""
    out = pb.StreamEvent()
    if isinstance(doc, dict):
        _fill(out, doc)
    else:
        out.raw.json = _dumps(doc)
    return out


# --------------------------------------------------------------------------- proto -> JSON


class _BadJson(Exception):
    """A ``raw.json`` / ``extra_json`` that is not a JSON object; ``path`` grows on the way up."""

    def __init__(self, reason: str, path: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


class _Dump:
    """One proto → JSON conversion; ``hatch`` records whether a raw case or extra was used."""

    __slots__ = ("hatch",)

    def __init__(self) -> None:
        self.hatch = False

    def message(self, msg: Any) -> Any:
        plan = _plan(type(msg))
        if plan.kind is not _MESSAGE:
            return struct_to_dict(msg) if plan.kind is _STRUCT else value_to_py(msg)
        if plan.union is not None:
            case = msg.WhichOneof(plan.union)
            if case is None:
                out: dict[str, Any] = {}
            elif case == plan.raw:
                self.hatch = True
                out = _json_object(msg.raw.json, [case, "json"])
            else:
                try:
                    out = {"type": case, **self.message(getattr(msg, case))}
                except _BadJson as exc:
                    exc.path.insert(0, case)
                    raise
        else:
            out = {"type": plan.tag} if plan.tag else {}
            by_number = plan.by_number
            for fd, value in msg.ListFields():
                field = by_number[fd.number]
                if field is None:
                    continue
                try:
                    out[field.key] = self.value(field, value)
                except _BadJson as exc:
                    exc.path.insert(0, field.key)
                    raise
            for key, default in plan.defaults:
                if key not in out:
                    out[key] = default
            for key, raw_name in plan.raw_enums:
                if key not in out:
                    raw = getattr(msg, raw_name)
                    if raw:
                        out[key] = raw
        if plan.to_json is not None:
            out = plan.to_json(msg, out)
        if plan.extra:
            extra = msg.extra_json
            if extra:
                self.hatch = True
                _deep_merge(out, _json_object(extra, [_EXTRA]))
        return out

    def value(self, field: _Field, value: Any) -> Any:
        kind = field.kind
        if field.repeated:
            if kind is _MESSAGE or kind is _STRUCT or kind is _VALUE:
                out = []
                for i, item in enumerate(value):
                    try:
                        out.append(self.message(item))
                    except _BadJson as exc:
                        exc.path[0:0] = [f"[{i}]"]
                        raise
                return out
            return list(value)
        if kind is _MESSAGE or kind is _STRUCT or kind is _VALUE:
            return self.message(value)
        if kind is _ENUM:
            return field.enum_by_number.get(value, value)
        return value


def _json_object(text: str, path: list[str]) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _BadJson(f"not valid JSON ({exc})", path) from None
    if not isinstance(value, dict):
        raise _BadJson("must be a JSON object", path)
    return value


def _path(parts: list[str]) -> str:
    return ".".join(parts).replace(".[", "[")


def _deep_merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _block_delta_json(msg: pb.ContentBlockDeltaEvent, out: dict[str, Any]) -> dict[str, Any]:
    case = msg.WhichOneof("delta")
    result: dict[str, Any] = {"index": msg.index}
    if case == "raw_delta":
        result["delta"] = _json_object(msg.raw_delta.json, ["raw_delta", "json"])
    elif case == "citations_delta":
        result["delta"] = {"type": case, "citation": struct_to_dict(msg.citations_delta)}
    elif case is not None:
        result["delta"] = {"type": case, _DELTA_FIELDS[case]: getattr(msg, case)}
    return result


def _message_delta_json(msg: pb.MessageDeltaEvent, out: dict[str, Any]) -> dict[str, Any]:
    usage = out.pop("usage", None)
    result: dict[str, Any] = {"delta": out}
    if usage is not None:
        result["usage"] = usage
    return result


def _error_json(msg: pb.ErrorEvent, out: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"type": msg.type, "message": msg.message}}


def _system_json(msg: Any, out: dict[str, Any]) -> dict[str, Any]:
    if "system_blocks" in out:
        if "system" in out:
            raise InvalidRequestError(
                "system: set system or system_blocks, not both", field="system"
            )
        out["system"] = out.pop("system_blocks")
    return out


def _default(key: str, value: Any) -> Callable[[Any, dict[str, Any]], dict[str, Any]]:
    def fill(msg: Any, out: dict[str, Any]) -> dict[str, Any]:
        out.setdefault(key, value)
        return out

    return fill


_RAW_NAME = pb.RawJson.DESCRIPTOR.full_name
_FROM_JSON: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    pb.ContentBlockDeltaEvent.DESCRIPTOR.full_name: _fill_block_delta,
    pb.MessageDeltaEvent.DESCRIPTOR.full_name: _fill_message_delta,
    pb.ErrorEvent.DESCRIPTOR.full_name: _fill_error,
}
_TO_JSON: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    pb.ContentBlockDeltaEvent.DESCRIPTOR.full_name: _block_delta_json,
    pb.MessageDeltaEvent.DESCRIPTOR.full_name: _message_delta_json,
    pb.ErrorEvent.DESCRIPTOR.full_name: _error_json,
    spb.CreateMessageRequest.DESCRIPTOR.full_name: _system_json,
    spb.CountTokensRequest.DESCRIPTOR.full_name: _system_json,
    pb.CacheControl.DESCRIPTOR.full_name: _default("type", "ephemeral"),
    pb.PlainTextSource.DESCRIPTOR.full_name: _default("media_type", "text/plain"),
    pb.CitationsConfig.DESCRIPTOR.full_name: _default("enabled", False),
}


def request_to_json(
    req: spb.CreateMessageRequest | spb.CountTokensRequest, *, stream: bool = False
) -> tuple[dict[str, Any], bool]:
    """The Anthropic JSON body of a request, and whether it used the escape hatch."""
    dump = _Dump()
    try:
        body: dict[str, Any] = dump.message(req)
    except _BadJson as exc:
        path = _path(exc.path)
        raise InvalidRequestError(f"{path}: {exc.reason}", field=path) from None
    if stream:
        body["stream"] = True
    return body, dump.hatch


def message_to_json(message: pb.Message) -> dict[str, Any]:
    """A proto ``Message`` as the Anthropic JSON ``message`` object."""
    out: dict[str, Any] = _Dump().message(message)
    return out


def event_to_json(event: pb.StreamEvent) -> dict[str, Any]:
    """One proto ``StreamEvent`` as the Anthropic JSON event."""
    out: dict[str, Any] = _Dump().message(event)
    return out
