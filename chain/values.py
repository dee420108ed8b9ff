"""Typed values: the arguments of contract calls, event fields and contract storage.

A value is an int, bytes, str, bool or a list of values. It is encoded as a two-item rlp
list [tag, payload] so that decoding recovers the exact type (rlp alone only knows bytes
and lists). Tags: b"i" non-negative int, b"n" negative int (payload = magnitude),
b"b" bytes, b"s" UTF-8 str, b"t"/b"f" booleans, b"l" list.
"""

from __future__ import annotations

from typing import Any

import rlp

from chain.errors import DecodeError

Value = int | bytes | str | bool | list["Value"]
Encoded = list[Any]  # nested lists of bytes, as rlp sees them (rlp may hand back tuples)

NESTING_MAX = 8


def encode_value(value: Value, depth: int = 0) -> Encoded:
    if depth > NESTING_MAX:
        raise DecodeError(f"value nested deeper than {NESTING_MAX}")
    if isinstance(value, bool):  # before int: bool is an int subclass
        return [b"t" if value else b"f", b""]
    if isinstance(value, int):
        magnitude = big_endian(abs(value))
        return [b"i" if value >= 0 else b"n", magnitude]
    if isinstance(value, bytes):
        return [b"b", value]
    if isinstance(value, str):
        return [b"s", value.encode()]
    if isinstance(value, list):
        return [b"l", [encode_value(item, depth + 1) for item in value]]
    raise DecodeError(f"unsupported value type {type(value).__name__}")


def decode_value(encoded: object, depth: int = 0) -> Value:
    if depth > NESTING_MAX:
        raise DecodeError(f"value nested deeper than {NESTING_MAX}")
    if not isinstance(encoded, (list, tuple)) or len(encoded) != 2 or not isinstance(encoded[0], bytes):
        raise DecodeError("a typed value is a [tag, payload] pair")
    tag: object
    payload: object
    tag, payload = encoded
    if tag == b"l":
        if not isinstance(payload, (list, tuple)):
            raise DecodeError("list payload must be a list")
        return [decode_value(item, depth + 1) for item in payload]
    if not isinstance(payload, bytes):
        raise DecodeError(f"payload of tag {tag!r} must be bytes")
    if tag in (b"i", b"n"):
        if payload[:1] == b"\x00":
            raise DecodeError("integer with leading zero byte")
        magnitude = int.from_bytes(payload, "big")
        if tag == b"n" and magnitude == 0:
            raise DecodeError("negative zero")
        return magnitude if tag == b"i" else -magnitude
    if tag == b"b":
        return payload
    if tag == b"s":
        try:
            return payload.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError("string is not UTF-8") from exc
    if tag in (b"t", b"f"):
        if payload:
            raise DecodeError("boolean carries no payload")
        return tag == b"t"
    raise DecodeError(f"unknown value tag {tag!r}")


def encode_values(values: list[Value]) -> Encoded:
    return [encode_value(v) for v in values]


def decode_values(encoded: object) -> list[Value]:
    if not isinstance(encoded, (list, tuple)):
        raise DecodeError("argument list must be a list")
    return [decode_value(item) for item in encoded]


def value_to_bytes(value: Value) -> bytes:
    """Storage form of a single value."""
    return rlp.encode(encode_value(value))


def value_from_bytes(data: bytes) -> Value:
    try:
        return decode_value(rlp.decode(data))
    except rlp.exceptions.DecodingError as exc:
        raise DecodeError(f"not rlp: {exc}") from exc


def big_endian(n: int) -> bytes:
    """rlp's big_endian_int: minimal big-endian bytes, b"" for 0 (no negatives). Used where
    records are encoded by hand with encode_raw on hot paths."""
    assert n >= 0, "big_endian of a negative number"
    return n.to_bytes((n.bit_length() + 7) // 8, "big")
