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
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from sidecar.errors import InvalidRequestError
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_pb2 as pb
from sidecar.grpc_api.gen.anyllm.sidecar.v1 import messages_service_pb2 as spb

__all__ = [
    "event_from_json",
    "event_to_json",
    "message_from_json",
    "message_to_json",
    "request_from_json",
    "request_to_json",
]

_STRUCT = struct_pb2.Struct.DESCRIPTOR.full_name
_VALUE = struct_pb2.Value.DESCRIPTOR.full_name
_RAW = pb.RawJson.DESCRIPTOR.full_name
_EXTRA = "extra_json"
_MAX_EXACT_INT = 2**53
_INT_RANGE = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
}
# Strings written even when empty: an empty value is a real value there.
_ALWAYS = frozenset({"text", "thinking", "signature", "partial_json", "data"})
# Repeated fields written even when empty.
_ALWAYS_LIST = frozenset({(pb.Message.DESCRIPTOR.full_name, "content")})
# The constant `type` of a message that is not a union case.
_TAGS = {pb.Message.DESCRIPTOR.full_name: "message"}
_OK = object()


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# --------------------------------------------------------------------------- plans


@dataclasses.dataclass(slots=True)
class _Plan:
    fields: dict[str, FieldDescriptor]  # JSON key -> field (not the oneof cases of a union)
    union: str | None  # the oneof of a union message
    cases: dict[str, FieldDescriptor]  # JSON type -> case
    raw: FieldDescriptor | None  # the RawJson case of a union
    extra: bool  # has an extra_json field
    raw_enums: dict[str, str]  # enum field -> its raw_<field> companion
    tag: str | None


_PLANS: dict[str, _Plan] = {}


def _plan(desc: Descriptor) -> _Plan:
    plan = _PLANS.get(desc.full_name)
    if plan is not None:
        return plan
    names = {f.name for f in desc.fields}
    union: str | None = None
    cases: dict[str, FieldDescriptor] = {}
    raw: FieldDescriptor | None = None
    for oneof in desc.oneofs:
        inside = {f.name for f in oneof.fields}
        if inside == {oneof.name[1:]}:
            continue  # the synthetic oneof of a proto3 `optional` field
        if names - inside <= {_EXTRA}:  # every field is a case: a union on `type`
            union = oneof.name
            for f in oneof.fields:
                if f.message_type is not None and f.message_type.full_name == _RAW:
                    raw = f
                else:
                    cases[f.name] = f
    fields: dict[str, FieldDescriptor] = {}
    raw_enums: dict[str, str] = {}
    for f in desc.fields:
        if f.name == _EXTRA or f.name in cases or f is raw:
            continue
        if f.name.startswith("raw_") and f.name[4:] in names:
            raw_enums[f.name[4:]] = f.name
            continue
        fields[f.name] = f
    plan = _Plan(fields, union, cases, raw, _EXTRA in names, raw_enums, _TAGS.get(desc.full_name))
    _PLANS[desc.full_name] = plan
    return plan


_ENUM_PREFIX: dict[str, str] = {}


def _enum_prefix(field: FieldDescriptor) -> str:
    enum = field.enum_type
    assert enum is not None
    prefix = _ENUM_PREFIX.get(enum.full_name)
    if prefix is None:
        prefix = enum.values[0].name.removesuffix("UNSPECIFIED")  # ROLE_UNSPECIFIED -> ROLE_
        _ENUM_PREFIX[enum.full_name] = prefix
    return prefix


def _enum(field: FieldDescriptor) -> EnumDescriptor:
    enum = field.enum_type
    assert enum is not None
    return enum


# --------------------------------------------------------------------------- JSON -> proto


def _fill(msg: Any, obj: dict[str, Any]) -> dict[str, Any]:
    """Write ``obj`` into ``msg``; return what could not be carried (empty: everything was)."""
    desc = msg.DESCRIPTOR
    quirk = _FROM_JSON.get(desc.full_name)
    if quirk is not None:
        return quirk(msg, obj)
    plan = _plan(desc)
    if plan.union is not None:
        return _fill_union(msg, obj, plan)
    left: dict[str, Any] = {}
    for key, value in obj.items():
        if value is None:
            continue
        field = plan.fields.get(key)
        if field is None:
            if not (key == "type" and value == plan.tag):
                left[key] = value
            continue
        rest = _set(msg, field, value, plan)
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
        child = getattr(msg, case.name)
        child.SetInParent()
        left = _fill(child, {k: v for k, v in obj.items() if k != "type"})
        if not left:
            return {}
        if plan.extra:
            msg.extra_json = _dumps(left)
            return {}
        msg.ClearField(case.name)
    if plan.raw is None:
        return obj
    raw = getattr(msg, plan.raw.name)
    raw.type = kind if isinstance(kind, str) else ""
    raw.json = _dumps(obj)
    return {}


def _set(msg: Any, field: FieldDescriptor, value: Any, plan: _Plan) -> Any:
    """Set one field from its JSON value; ``_OK``, or the part of the value not carried."""
    name = field.name
    if field.is_repeated:
        if not isinstance(value, list):
            return value
        target = getattr(msg, name)
        for item in value:
            if field.message_type is None:
                if not _scalar_ok(field, item):
                    msg.ClearField(name)
                    return value
                target.append(item)
            elif not isinstance(item, dict) or _fill_child(target.add(), item):
                msg.ClearField(name)
                return value
        return _OK
    if field.message_type is not None:
        if field.message_type.full_name == _VALUE:
            _to_value(value, getattr(msg, name))
            return _OK
        if not isinstance(value, dict):
            return value
        child = getattr(msg, name)
        child.SetInParent()
        left = _fill_child(child, value)
        if left and _plan(field.message_type).union is not None:
            msg.ClearField(name)
            return value
        return left or _OK
    if field.type == FieldDescriptor.TYPE_ENUM:
        if not isinstance(value, str):
            return value
        raw_name = plan.raw_enums.get(name)
        number = _enum(field).values_by_name.get(_enum_prefix(field) + value.upper())
        if number is not None:
            setattr(msg, name, number.number)
        elif raw_name is None:
            return value
        if raw_name is not None:
            setattr(msg, raw_name, value)
        return _OK
    if not _scalar_ok(field, value):
        return value
    setattr(msg, name, value)
    return _OK


def _fill_child(child: Any, value: dict[str, Any]) -> dict[str, Any]:
    if child.DESCRIPTOR.full_name == _STRUCT:
        child.update(value)
        return {}
    return _fill(child, value)


def _scalar_ok(field: FieldDescriptor, value: Any) -> bool:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return isinstance(value, str)
    if kind == FieldDescriptor.TYPE_BOOL:
        return isinstance(value, bool)
    if kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        return type(value) is int and low <= value <= high
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return False


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
        if key == "index" and _scalar_ok(pb.ContentBlockDeltaEvent.DESCRIPTOR.fields[0], value):
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
    plan = _plan(msg.DESCRIPTOR)
    left: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "delta" and isinstance(value, dict):
            inner: dict[str, Any] = {}
            for name, item in value.items():
                field = plan.fields.get(name)
                if item is None:
                    continue
                if field is None or name == "usage":
                    inner[name] = item
                elif (rest := _set(msg, field, item, plan)) is not _OK:
                    inner[name] = rest
            if inner:
                left["delta"] = inner
        elif key == "usage" and isinstance(value, dict):
            if (rest := _set(msg, plan.fields["usage"], value, plan)) is not _OK:
                left["usage"] = rest
        elif value is not None:
            left[key] = value
    return left


def _fill_error(msg: pb.ErrorEvent, obj: dict[str, Any]) -> dict[str, Any]:
    body = obj.get("error")
    if not isinstance(body, dict):
        return obj
    left = {k: v for k, v in obj.items() if k != "error"}
    rest = _fill(msg, body)
    if rest:
        left["error"] = rest
    return left


_FROM_JSON: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    pb.ContentBlockDeltaEvent.DESCRIPTOR.full_name: _fill_block_delta,
    pb.MessageDeltaEvent.DESCRIPTOR.full_name: _fill_message_delta,
    pb.ErrorEvent.DESCRIPTOR.full_name: _fill_error,
}


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


class _Dump:
    """One proto → JSON conversion; ``hatch`` records whether a raw case or extra was used."""

    __slots__ = ("hatch",)

    def __init__(self) -> None:
        self.hatch = False

    def message(self, msg: Any, path: str) -> Any:
        desc = msg.DESCRIPTOR
        full_name = desc.full_name
        if full_name == _STRUCT:
            return _struct_to_py(msg)
        if full_name == _VALUE:
            return _value_to_py(msg)
        plan = _plan(desc)
        if plan.union is not None:
            case = msg.WhichOneof(plan.union)
            if case is None:
                out: dict[str, Any] = {}
            elif plan.raw is not None and case == plan.raw.name:
                self.hatch = True
                out = _json_object(msg.raw.json, f"{path}.{case}.json")
            else:
                out = {"type": case, **self.message(getattr(msg, case), f"{path}.{case}")}
        else:
            out = {"type": plan.tag} if plan.tag else {}
            for key, field in plan.fields.items():
                value = self.field(msg, field, f"{path}.{key}" if path else key)
                if value is not _OK:
                    out[key] = value
            for key, raw_name in plan.raw_enums.items():
                raw = getattr(msg, raw_name)
                if raw and key not in out:
                    out[key] = raw
        shape = _TO_JSON.get(full_name)
        if shape is not None:
            out = shape(msg, out)
        if plan.extra and msg.extra_json:
            self.hatch = True
            where = f"{path}.{_EXTRA}" if path else _EXTRA
            _deep_merge(out, _json_object(msg.extra_json, where))
        return out

    def field(self, msg: Any, field: FieldDescriptor, path: str) -> Any:
        name = field.name
        if field.is_repeated:
            items = getattr(msg, name)
            if not items:
                return [] if (msg.DESCRIPTOR.full_name, name) in _ALWAYS_LIST else _OK
            if field.message_type is None:
                return list(items)
            return [self.message(item, f"{path}[{i}]") for i, item in enumerate(items)]
        if field.message_type is not None:
            if not msg.HasField(name):
                return _OK
            return self.message(getattr(msg, name), path)
        if field.has_presence and not msg.HasField(name):
            return _OK
        value = getattr(msg, name)
        if field.type == FieldDescriptor.TYPE_ENUM:
            if value == 0:
                return _OK
            return _enum(field).values_by_number[value].name[len(_enum_prefix(field)) :].lower()
        if field.type == FieldDescriptor.TYPE_STRING and not value and name not in _ALWAYS:
            return _OK
        return value


def _json_object(text: str, path: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"{path}: not valid JSON ({exc})", field=path) from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{path}: must be a JSON object", field=path)
    return value


def _deep_merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _struct_to_py(struct: struct_pb2.Struct) -> dict[str, Any]:
    # Keys sorted: a protobuf map has no order, and the same request must make the same JSON
    # in every process (upstream prompt caches match on the bytes).
    fields = struct.fields
    return {key: _value_to_py(fields[key]) for key in sorted(fields)}


def _value_to_py(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and -_MAX_EXACT_INT <= number <= _MAX_EXACT_INT:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return _struct_to_py(value.struct_value)
    if kind == "list_value":
        return [_value_to_py(item) for item in value.list_value.values]
    return None


def _block_delta_json(msg: pb.ContentBlockDeltaEvent, out: dict[str, Any]) -> dict[str, Any]:
    case = msg.WhichOneof("delta")
    result: dict[str, Any] = {"index": msg.index}
    if case == "raw_delta":
        result["delta"] = _json_object(msg.raw_delta.json, "content_block_delta.raw_delta.json")
    elif case == "citations_delta":
        result["delta"] = {"type": case, "citation": _struct_to_py(msg.citations_delta)}
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
        out["system"] = out.pop("system_blocks")
    return out


def _default(key: str, value: Any) -> Callable[[Any, dict[str, Any]], dict[str, Any]]:
    def fill(msg: Any, out: dict[str, Any]) -> dict[str, Any]:
        out.setdefault(key, value)
        return out

    return fill


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
    body: dict[str, Any] = dump.message(req, "")
    if stream:
        body["stream"] = True
    return body, dump.hatch


def message_to_json(message: pb.Message) -> dict[str, Any]:
    """A proto ``Message`` as the Anthropic JSON ``message`` object."""
    out: dict[str, Any] = _Dump().message(message, "")
    return out


def event_to_json(event: pb.StreamEvent) -> dict[str, Any]:
    """A proto ``StreamEvent`` as the Anthropic JSON event."""
    out: dict[str, Any] = _Dump().message(event, "")
    return out
