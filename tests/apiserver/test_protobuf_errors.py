"""Parse errors in the words of upstream's gogo-generated decoders (machinery/protobuf_errors.py).

upb only reports that a parse failed; the codec walks the refused bytes as gogo's Unmarshal
would and names the first fault: truncation, an over-long varint, a negative length, an
illegal wire type, field number 0, a stray end-group tag.  Through the API server these
texts end up in the 400's message (codec.decode_protobuf), as upstream's transformDecodeError.
"""

from __future__ import annotations

import pytest

from kubeplane.apiserver.machinery import codec, errors
from kubeplane.apiserver.machinery import protobuf as pb
from kubeplane.apiserver.machinery.protobuf_gen import varint

_POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]}}


def _body_with(extra: bytes) -> bytes:
    """The pod's body with `extra` appended to the Pod message (inside the envelope)."""
    raw = pb.encode_raw(_POD, "v1", "Pod")
    return pb.envelope("v1", "Pod", raw + extra)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return varint(number << 3 | wire) + payload


def _message(body: bytes) -> str:
    with pytest.raises(pb.ProtobufError) as e:
        pb.decode(body)
    return e.value.message


@pytest.mark.parametrize("extra,text", [
    (_field(99, 7, b""), "proto: illegal wireType 7"),
    (_field(99, 6, b""), "proto: illegal wireType 6"),
    (b"\x00", "proto: Pod: illegal tag 0 (wire type 0)"),
    (b"\x02\x00", "proto: Pod: illegal tag 0 (wire type 2)"),
    (_field(1, 4, b""), "proto: Pod: wiretype end group for non-group"),
    (_field(99, 0, b"\xff" * 10 + b"\x01"), "proto: integer overflow"),
    (_field(99, 2, varint(1 << 63)), "proto: negative length found during unmarshaling"),
    (_field(99, 2, varint(50) + b"short"), "unexpected EOF"),
    (_field(99, 3, _field(1, 0, b"\x01")), "unexpected EOF"),              # a group never closed
    (_field(1, 2, varint(1) + b"\x00"), "proto: ObjectMeta: illegal tag 0 (wire type 0)"),  # nested
    (_field(1, 2, varint(3) + _field(1, 2, varint(1) + b"\xff")),
     "proto: ObjectMeta: field name is not valid UTF-8"),
])
def test_fault_named_as_gogo_does(extra: bytes, text: str) -> None:
    assert _message(_body_with(extra)) == text


def test_a_cut_body_is_unexpected_eof() -> None:
    body = _body_with(b"")
    for cut in (len(body) - 1, len(body) - 9, 12):
        assert _message(body[:cut]) in ("unexpected EOF", "Object 'Kind' is missing in "
                                        f"'{bytes(body[:cut][:64])!r}'")


def test_fields_upb_takes_are_still_taken() -> None:
    """An unknown field, a group, a known field with another wire type: parsed (upb keeps them
    as unknown fields), not errors."""
    for extra in (_field(99, 0, b"\x05"), _field(99, 3, _field(1, 0, b"\x01")) + _field(99, 4, b""),
                  _field(1, 0, b"\x01")):
        assert pb.decode(_body_with(extra))[2]["metadata"]["name"] == "web"


def test_the_400_carries_the_text() -> None:
    body = _body_with(b"\x00")
    with pytest.raises(errors.APIError) as e:
        codec.decode_protobuf(body, "Pod")
    assert e.value.code == 400
    assert ("the object provided is unrecognized (must be of type Pod): "
            "proto: Pod: illegal tag 0 (wire type 0) (") in e.value.message
