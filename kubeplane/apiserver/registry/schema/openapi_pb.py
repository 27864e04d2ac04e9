"""The Swagger 2.0 document in gnostic's protobuf form (`openapi.v2.Document`).

kubectl up to 1.28 fetches `/openapi/v2` with
`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and parses the answer
with `proto.Unmarshal` into github.com/google/gnostic's `openapi_v2.Document` (it uses the
document for `explain`, client-side apply's strategic merge and the fieldValidation query
parameter check); a JSON answer fails with "proto: cannot parse invalid wire-format data".

This module encodes the JSON document (as built by openapi.py) field by field, with the
field numbers of gnostic's OpenAPIv2.proto. Like gnostic, values of type `Any` (vendor
extensions, `default`, `enum`, `example`) carry YAML text in `Any.yaml` (JSON text, which
YAML readers accept). proto3 rules: zero values (empty string, false, 0) are omitted,
repeated fields repeat the key, and every message is length-delimited.
"""
from __future__ import annotations

import json
import struct
from typing import Any, Callable

PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
PROTOBUF_V2_ALT = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# kube-openapi answers both Accept spellings with this one (Go's mime parser rejects the "@")
CONTENT_TYPE = PROTOBUF_V2_ALT


def wants_protobuf(accept: str) -> bool:
    """True when the Accept header names gnostic's protobuf media type (either spelling)."""
    for part in accept.split(","):
        mt = part.split(";")[0].strip().lower()
        if mt in (PROTOBUF_V2, PROTOBUF_V2_ALT):
            q = [p.strip() for p in part.split(";")[1:] if p.strip().startswith("q=")]
            if not q or q[0][2:].strip() not in ("0", "0.0", "0.00", "0.000"):
                return True
    return False


# --- wire format -------------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(num: int, data: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(data)) + data


Enc = Callable[[Any], bytes]


def _string(v: Any) -> bytes:
    return v.encode() if isinstance(v, str) else json.dumps(v).encode()


def _any(v: Any) -> bytes:
    """gnostic `Any`: field 2 is the value as YAML text."""
    return _len_field(2, json.dumps(v).encode())


def _message(spec: list[tuple[str, int, str, Any]]) -> Enc:
    """An encoder for a message from (json key, field number, kind, sub-encoder) rows.

    Kinds: str, bool, int, double, strs (repeated string), any, anys (repeated Any),
    msg (one message), msgs (repeated message), ext (the object's `x-` keys as NamedAny)."""
    def enc(obj: Any) -> bytes:
        if not isinstance(obj, dict):
            return b""
        out: list[bytes] = []
        for key, num, kind, sub in spec:
            if kind == "ext":
                for k, v in obj.items():
                    if k.startswith("x-"):
                        out.append(_len_field(num, _len_field(1, k.encode()) + _len_field(2, _any(v))))
                continue
            if key not in obj or obj[key] is None:
                continue
            v = obj[key]
            if kind == "str":
                if v != "":
                    out.append(_len_field(num, _string(v)))
            elif kind == "bool":
                if v:
                    out.append(_varint(num << 3) + b"\x01")
            elif kind == "int":
                if isinstance(v, (int, float)) and int(v):
                    out.append(_varint(num << 3) + _varint(int(v)))
            elif kind == "double":
                if isinstance(v, (int, float)) and v:
                    out.append(_varint(num << 3 | 1) + struct.pack("<d", float(v)))
            elif kind == "strs":
                for s in v if isinstance(v, list) else [v]:
                    out.append(_len_field(num, _string(s)))
            elif kind == "any":
                out.append(_len_field(num, _any(v)))
            elif kind == "anys":
                for x in v if isinstance(v, list) else [v]:
                    out.append(_len_field(num, _any(x)))
            elif kind == "msg":
                out.append(_len_field(num, sub(v)))
            elif kind == "msgs":
                for x in v if isinstance(v, list) else [v]:
                    out.append(_len_field(num, sub(x)))
        return b"".join(out)
    return enc


def _named(value_enc: Enc) -> Callable[[Any], list[bytes]]:
    """Maps as repeated Named* messages (name = 1, value = 2), in the object's order."""
    def enc(obj: Any) -> list[bytes]:
        if not isinstance(obj, dict):
            return []
        return [_len_field(1, str(k).encode()) + _len_field(2, value_enc(v)) for k, v in obj.items()]
    return enc


def _map_message(num: int, value_enc: Enc) -> Enc:
    """A message whose only field `num` is a repeated Named* list (Definitions, Properties...)."""
    named = _named(value_enc)

    def enc(obj: Any) -> bytes:
        return b"".join(_len_field(num, item) for item in named(obj))
    return enc


# --- messages ----------------------------------------------------------------------------------

_external_docs = _message([("description", 1, "str", None), ("url", 2, "str", None), ("", 3, "ext", None)])
_xml = _message([("name", 1, "str", None), ("namespace", 2, "str", None), ("prefix", 3, "str", None),
                 ("attribute", 4, "bool", None), ("wrapped", 5, "bool", None), ("", 6, "ext", None)])


def _schema(obj: Any) -> bytes:
    return _SCHEMA(obj)


def _type_item(v: Any) -> bytes:
    return b"".join(_len_field(1, _string(t)) for t in (v if isinstance(v, list) else [v]))


def _items_item(v: Any) -> bytes:
    return b"".join(_len_field(1, _schema(s)) for s in (v if isinstance(v, list) else [v]))


def _additional_properties(v: Any) -> bytes:
    if isinstance(v, bool):
        return _varint(2 << 3) + (b"\x01" if v else b"\x00")
    return _len_field(1, _schema(v))


_SCHEMA = _message([
    ("$ref", 1, "str", None), ("format", 2, "str", None), ("title", 3, "str", None),
    ("description", 4, "str", None), ("default", 5, "any", None), ("multipleOf", 6, "double", None),
    ("maximum", 7, "double", None), ("exclusiveMaximum", 8, "bool", None), ("minimum", 9, "double", None),
    ("exclusiveMinimum", 10, "bool", None), ("maxLength", 11, "int", None), ("minLength", 12, "int", None),
    ("pattern", 13, "str", None), ("maxItems", 14, "int", None), ("minItems", 15, "int", None),
    ("uniqueItems", 16, "bool", None), ("maxProperties", 17, "int", None), ("minProperties", 18, "int", None),
    ("required", 19, "strs", None), ("enum", 20, "anys", None),
    ("additionalProperties", 21, "msg", _additional_properties), ("type", 22, "msg", _type_item),
    ("items", 23, "msg", _items_item), ("allOf", 24, "msgs", _schema),
    ("properties", 25, "msg", _map_message(1, _schema)), ("discriminator", 26, "str", None),
    ("readOnly", 27, "bool", None), ("xml", 28, "msg", _xml), ("externalDocs", 29, "msg", _external_docs),
    ("example", 30, "any", None), ("", 31, "ext", None),
])


def _primitives_items(obj: Any) -> bytes:
    return _PRIMITIVES(obj)


_PRIMITIVES = _message([
    ("type", 1, "str", None), ("format", 2, "str", None), ("items", 3, "msg", _primitives_items),
    ("collectionFormat", 4, "str", None), ("default", 5, "any", None), ("maximum", 6, "double", None),
    ("exclusiveMaximum", 7, "bool", None), ("minimum", 8, "double", None), ("exclusiveMinimum", 9, "bool", None),
    ("maxLength", 10, "int", None), ("minLength", 11, "int", None), ("pattern", 12, "str", None),
    ("maxItems", 13, "int", None), ("minItems", 14, "int", None), ("uniqueItems", 15, "bool", None),
    ("enum", 16, "anys", None), ("multipleOf", 17, "double", None), ("", 18, "ext", None),
])

# header and path parameters share one numbering; query and formData another (allowEmptyValue = 5)
_HEADER_OR_PATH = _message([
    ("required", 1, "bool", None), ("in", 2, "str", None), ("description", 3, "str", None),
    ("name", 4, "str", None), ("type", 5, "str", None), ("format", 6, "str", None),
    ("items", 7, "msg", _primitives_items), ("collectionFormat", 8, "str", None), ("default", 9, "any", None),
    ("maximum", 10, "double", None), ("exclusiveMaximum", 11, "bool", None), ("minimum", 12, "double", None),
    ("exclusiveMinimum", 13, "bool", None), ("maxLength", 14, "int", None), ("minLength", 15, "int", None),
    ("pattern", 16, "str", None), ("maxItems", 17, "int", None), ("minItems", 18, "int", None),
    ("uniqueItems", 19, "bool", None), ("enum", 20, "anys", None), ("multipleOf", 21, "double", None),
    ("", 22, "ext", None),
])
_QUERY_OR_FORM = _message([
    ("required", 1, "bool", None), ("in", 2, "str", None), ("description", 3, "str", None),
    ("name", 4, "str", None), ("allowEmptyValue", 5, "bool", None), ("type", 6, "str", None),
    ("format", 7, "str", None), ("items", 8, "msg", _primitives_items), ("collectionFormat", 9, "str", None),
    ("default", 10, "any", None), ("maximum", 11, "double", None), ("exclusiveMaximum", 12, "bool", None),
    ("minimum", 13, "double", None), ("exclusiveMinimum", 14, "bool", None), ("maxLength", 15, "int", None),
    ("minLength", 16, "int", None), ("pattern", 17, "str", None), ("maxItems", 18, "int", None),
    ("minItems", 19, "int", None), ("uniqueItems", 20, "bool", None), ("enum", 21, "anys", None),
    ("multipleOf", 22, "double", None), ("", 23, "ext", None),
])
_BODY = _message([
    ("description", 1, "str", None), ("name", 2, "str", None), ("in", 3, "str", None),
    ("required", 4, "bool", None), ("schema", 5, "msg", _schema), ("", 6, "ext", None),
])
_NON_BODY_FIELD = {"header": (1, _HEADER_OR_PATH), "formData": (2, _QUERY_OR_FORM),
                   "query": (3, _QUERY_OR_FORM), "path": (4, _HEADER_OR_PATH)}


def _parameter(p: Any) -> bytes:
    """`Parameter`: oneof body_parameter = 1 | non_body_parameter = 2 (by `in`)."""
    if not isinstance(p, dict):
        return b""
    where = p.get("in")
    if where == "body":
        return _len_field(1, _BODY(p))
    num, enc = _NON_BODY_FIELD.get(where, (3, _QUERY_OR_FORM))
    return _len_field(2, _len_field(num, enc(p)))


def _json_reference(obj: dict[str, Any]) -> bytes:
    out = _len_field(1, str(obj["$ref"]).encode())
    if obj.get("description"):
        out += _len_field(2, str(obj["description"]).encode())
    return out


def _parameters_item(p: Any) -> bytes:
    """`ParametersItem`: oneof parameter = 1 | json_reference = 2."""
    if isinstance(p, dict) and "$ref" in p:
        return _len_field(2, _json_reference(p))
    return _len_field(1, _parameter(p))


_response = _message([
    ("description", 1, "str", None),
    ("schema", 2, "msg", lambda s: _len_field(1, _schema(s))),     # SchemaItem.schema
    ("headers", 3, "msg", _map_message(1, _PRIMITIVES)),           # Header shares the first fields
    ("examples", 4, "msg", _map_message(1, lambda v: _any(v))),
    ("", 5, "ext", None),
])


def _response_value(r: Any) -> bytes:
    if isinstance(r, dict) and "$ref" in r:
        return _len_field(2, _json_reference(r))
    return _len_field(1, _response(r))


def _responses(obj: Any) -> bytes:
    if not isinstance(obj, dict):
        return b""
    out = [_len_field(1, _len_field(1, str(code).encode()) + _len_field(2, _response_value(r)))
           for code, r in obj.items() if not str(code).startswith("x-")]
    out += [_len_field(2, _len_field(1, k.encode()) + _len_field(2, _any(v)))
            for k, v in obj.items() if str(k).startswith("x-")]
    return b"".join(out)



def _security_requirement(obj: Any) -> bytes:
    if not isinstance(obj, dict):
        return b""
    return b"".join(_len_field(1, _len_field(1, k.encode()) + _len_field(
        2, b"".join(_len_field(1, _string(s)) for s in (v or [])))) for k, v in obj.items())


_OPERATION = _message([
    ("tags", 1, "strs", None), ("summary", 2, "str", None), ("description", 3, "str", None),
    ("externalDocs", 4, "msg", _external_docs), ("operationId", 5, "str", None),
    ("produces", 6, "strs", None), ("consumes", 7, "strs", None),
    ("parameters", 8, "msgs", _parameters_item), ("responses", 9, "msg", _responses),
    ("schemes", 10, "strs", None), ("deprecated", 11, "bool", None),
    ("security", 12, "msgs", _security_requirement), ("", 13, "ext", None),
])
_PATH_ITEM = _message([
    ("$ref", 1, "str", None), ("get", 2, "msg", _OPERATION), ("put", 3, "msg", _OPERATION),
    ("post", 4, "msg", _OPERATION), ("delete", 5, "msg", _OPERATION), ("options", 6, "msg", _OPERATION),
    ("head", 7, "msg", _OPERATION), ("patch", 8, "msg", _OPERATION),
    ("parameters", 9, "msgs", _parameters_item), ("", 10, "ext", None),
])


def _paths(obj: Any) -> bytes:
    if not isinstance(obj, dict):
        return b""
    out = [_len_field(1, _len_field(1, k.encode()) + _len_field(2, _any(v)))
           for k, v in obj.items() if k.startswith("x-")]
    out += [_len_field(2, _len_field(1, k.encode()) + _len_field(2, _PATH_ITEM(v)))
            for k, v in obj.items() if not k.startswith("x-")]
    return b"".join(out)


def _security_definition(obj: Any) -> bytes:
    """`SecurityDefinitionsItem`: basic = 1, apiKey = 2 (the kinds kube-apiserver uses)."""
    if not isinstance(obj, dict):
        return b""
    if obj.get("type") == "basic":
        return _len_field(1, _message([("type", 1, "str", None), ("description", 2, "str", None),
                                       ("", 3, "ext", None)])(obj))
    return _len_field(2, _message([("type", 1, "str", None), ("name", 2, "str", None), ("in", 3, "str", None),
                                   ("description", 4, "str", None), ("", 5, "ext", None)])(obj))


_INFO = _message([("title", 1, "str", None), ("version", 2, "str", None), ("description", 3, "str", None),
                  ("termsOfService", 4, "str", None), ("", 7, "ext", None)])
_TAG = _message([("name", 1, "str", None), ("description", 2, "str", None),
                 ("externalDocs", 3, "msg", _external_docs), ("", 4, "ext", None)])
_DOCUMENT = _message([
    ("swagger", 1, "str", None), ("info", 2, "msg", _INFO), ("host", 3, "str", None),
    ("basePath", 4, "str", None), ("schemes", 5, "strs", None), ("consumes", 6, "strs", None),
    ("produces", 7, "strs", None), ("paths", 8, "msg", _paths),
    ("definitions", 9, "msg", _map_message(1, _schema)),
    ("parameters", 10, "msg", _map_message(1, _parameter)),
    ("responses", 11, "msg", _map_message(1, _response)),
    ("security", 12, "msgs", _security_requirement),
    ("securityDefinitions", 13, "msg", _map_message(1, _security_definition)),
    ("tags", 14, "msgs", _TAG), ("externalDocs", 15, "msg", _external_docs), ("", 16, "ext", None),
])


def encode_document(doc: dict[str, Any]) -> bytes:
    """The gnostic `openapi.v2.Document` protobuf bytes of a Swagger 2.0 JSON document."""
    return _DOCUMENT(doc)
