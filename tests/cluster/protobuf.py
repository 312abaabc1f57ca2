"""Just enough Kubernetes protobuf to read the request bodies kubectl sends that way.

kubectl's typed clients POST built-in kinds as `application/vnd.kubernetes.protobuf`
(`auth can-i` -> SelfSubjectAccessReview / SelfSubjectRulesReview) and accept JSON answers.
The body is the `k8s\\0` magic, then a runtime.Unknown {typeMeta{apiVersion, kind}, raw}.
"""

from __future__ import annotations

from typing import Any, Union

from .errors import bad_request

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# field number -> (JSON name, nested schema or None for a string)
Schema = dict[int, tuple[str, Union["Schema", None]]]

_RESOURCE_ATTRIBUTES: Schema = {1: ("namespace", None), 2: ("verb", None), 3: ("group", None),
                                4: ("version", None), 5: ("resource", None), 6: ("subresource", None),
                                7: ("name", None)}
_NON_RESOURCE_ATTRIBUTES: Schema = {1: ("path", None), 2: ("verb", None)}
SCHEMAS: dict[str, Schema] = {
    "SelfSubjectAccessReview": {2: ("spec", {1: ("resourceAttributes", _RESOURCE_ATTRIBUTES),
                                             2: ("nonResourceAttributes", _NON_RESOURCE_ATTRIBUTES)})},
    "SelfSubjectRulesReview": {2: ("spec", {1: ("namespace", None)})},
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def fields(data: bytes) -> dict[int, Any]:
    """Field number -> last value (int for varints, bytes otherwise)."""
    out: dict[int, Any] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        out[number] = value
    return out


def _to_json(data: bytes, schema: Schema) -> dict:
    out: dict[str, Any] = {}
    for number, value in fields(data).items():
        if number in schema:
            name, nested = schema[number]
            out[name] = value.decode() if nested is None else _to_json(value, nested)
    return out


def decode(body: bytes) -> dict:
    """A JSON-shaped dict for a protobuf-encoded object of a kind in SCHEMAS."""
    try:
        if not body.startswith(MAGIC):
            raise ValueError("missing the k8s protobuf magic")
        unknown = fields(body[len(MAGIC):])
        type_meta = fields(unknown.get(1, b""))
        api_version, kind = type_meta.get(1, b"").decode(), type_meta.get(2, b"").decode()
        if kind not in SCHEMAS:
            raise ValueError(f"cannot decode {kind or 'an unknown kind'} from protobuf")
        return {"apiVersion": api_version, "kind": kind, **_to_json(unknown.get(2, b""), SCHEMAS[kind])}
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        raise bad_request(f"unable to decode the protobuf body: {error}")
