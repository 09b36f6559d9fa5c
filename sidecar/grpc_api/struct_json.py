"""``google.protobuf.Struct`` / ``Value`` as plain JSON values, for both conversions
(``convert``: the typed model; ``json_proto``: relayed JSON).

Integral numbers come back as ``int`` (a ``Value`` holds a double; within 2**53 it is exact),
and a ``Struct``'s keys sorted: a protobuf map does not keep insertion order, and sorting makes
the JSON we send upstream the same for the same input in every process, which keeps upstream
prompt caches hitting.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

__all__ = ["struct_to_dict", "value_to_py"]

_MAX_EXACT_INT = 2.0**53


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    fields = struct.fields
    return {key: value_to_py(fields[key]) for key in sorted(fields)}


def value_to_py(value: struct_pb2.Value) -> Any:
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
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [value_to_py(item) for item in value.list_value.values]
    return None  # null_value, or no kind set
