"""Why a protobuf message does not parse, in the words upstream's decoder would use.

upb only says that a parse failed.  Upstream's objects are decoded by gogo-generated
``Unmarshal`` methods, whose errors tell the faults apart: ``unexpected EOF`` (truncated),
``proto: integer overflow`` (a varint of more than ten bytes), ``proto: negative length found
during unmarshaling``, ``proto: illegal wireType 7``, ``proto: Pod: illegal tag 0 (wire type
0)``, ``proto: Pod: wiretype end group for non-group``, ``proto: unexpected end of group``.
:func:`describe` walks the bytes as such a method does (field by field, into the message
fields the descriptor names) and returns the first of these it meets.

Some bytes upb refuses and gogo takes: a string that is not UTF-8 (Go strings hold any
bytes), a known field written with another wire type (upb keeps it as unknown; gogo says
``proto: wrong wireType``, but only for the fields it knows).  For those the text says what
upb objected to in plain words.
"""

from __future__ import annotations

from typing import Any

_EOF = "unexpected EOF"
_OVERFLOW = "proto: integer overflow"
_NEGATIVE = "proto: negative length found during unmarshaling"
_END_GROUP = "proto: unexpected end of group"

TYPE_MESSAGE = 11  # FieldDescriptor.TYPE_MESSAGE
TYPE_STRING = 9
_WIRE = {1: 1, 2: 5, 3: 0, 4: 0, 5: 0, 6: 1, 7: 5, 8: 0, 9: 2, 10: 3, 11: 2, 12: 2, 13: 0, 14: 0, 15: 5, 16: 1,
         17: 0, 18: 0}  # FieldDescriptor type -> wire type


class _Fault(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if shift >= 64:
            raise _Fault(_OVERFLOW)
        if i >= end:
            raise _Fault(_EOF)
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _length(buf: bytes, i: int, end: int) -> tuple[int, int]:
    """A length prefix (Go reads it into an int: 2^63 and more are negative) -> (start, stop)."""
    n, i = _varint(buf, i, end)
    if n >= 1 << 63:
        raise _Fault(_NEGATIVE)
    if i + n > end:
        raise _Fault(_EOF)
    return i, i + n


def _skip(buf: bytes, i: int, end: int) -> int:
    """gogo's skipGenerated: past one unknown field (groups included)."""
    depth = 0
    while True:
        wire, i = _varint(buf, i, end)
        wt = wire & 7
        if wt == 0:
            _, i = _varint(buf, i, end)
        elif wt == 1:
            i += 8
        elif wt == 2:
            n, i = _varint(buf, i, end)
            if n >= 1 << 63:
                raise _Fault(_NEGATIVE)
            i += n
        elif wt == 3:
            depth += 1
        elif wt == 4:
            if depth == 0:
                raise _Fault(_END_GROUP)
            depth -= 1
        elif wt == 5:
            i += 4
        else:
            raise _Fault(f"proto: illegal wireType {wt}")
        if i > end:
            raise _Fault(_EOF)
        if depth == 0:
            return i


def _walk(desc: Any, buf: bytes, i: int, end: int) -> None:
    name = desc.name
    while i < end:
        start = i
        wire, i = _varint(buf, i, end)
        number, wt = wire >> 3, wire & 7
        if wt == 4:
            raise _Fault(f"proto: {name}: wiretype end group for non-group")
        if number <= 0:
            raise _Fault(f"proto: {name}: illegal tag {number} (wire type {wire})")
        field = desc.fields_by_number.get(number)
        if field is None or _WIRE.get(field.type) != wt:
            # unknown, or a wire type the field does not have (upb keeps such a field as
            # unknown; packed repeated scalars too): skipped as gogo skips unknown fields
            i = _skip(buf, start, end)
            continue
        if wt == 0:
            _, i = _varint(buf, i, end)
        elif wt == 1 or wt == 5:
            i += 8 if wt == 1 else 4
            if i > end:
                raise _Fault(_EOF)
        else:
            s, i = _length(buf, i, end)
            if field.type == TYPE_MESSAGE:
                _walk(field.message_type, buf, s, i)
            elif field.type == TYPE_STRING:
                try:
                    buf[s:i].decode()
                except UnicodeDecodeError:
                    raise _Fault(f"proto: {name}: field {field.name} is not valid UTF-8") from None


def describe(desc: Any, data: bytes) -> str:
    """The error upstream's decoder gives for a message of type ``desc`` (a upb Descriptor)
    held in ``data``, which upb refused; "unexpected EOF" when the walk finds nothing."""
    buf = bytes(data)
    try:
        _walk(desc, buf, 0, len(buf))
    except _Fault as e:
        return e.text
    except RecursionError:
        return _EOF
    return _EOF
