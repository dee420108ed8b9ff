"""Frame codec: round trips, limits checked before the body, and hostile bytes."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p import BadMessage, FrameDecodeError, FrameError, FrameTooLarge, FrameTruncated
from p2p.framing import LENGTH_BYTES, FrameDecoder, Message, encode_frame

LIMIT = 4096
CONTAINERS = 64


def decoder() -> FrameDecoder:
    return FrameDecoder(LIMIT, CONTAINERS)


def frame_of(body: bytes) -> bytes:
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


def test_round_trip_in_one_chunk_and_byte_by_byte() -> None:
    messages: list[Message] = [
        {"type": "commit", "view": 3, "hash": b"\x01" * 32, "sigs": [b"a", b"b"]},
        {"type": "tx", "body": "héllo", "nested": {"k": [1, -2, None, True]}},
    ]
    stream = b"".join(encode_frame(m, LIMIT) for m in messages)

    whole = decoder()
    whole.feed(stream)
    assert [whole.next_message(), whole.next_message(), whole.next_message()] == [*messages, None]

    trickle = decoder()
    got = []
    for byte in stream:
        trickle.feed(bytes([byte]))
        if (message := trickle.next_message()) is not None:
            got.append(message)
    assert got == messages
    assert trickle.buffered == 0
    trickle.check_eof()


def test_length_prefix_over_limit_is_refused_before_the_body_arrives() -> None:
    d = decoder()
    d.feed((LIMIT + 1).to_bytes(LENGTH_BYTES, "big"))  # no body bytes at all
    with pytest.raises(FrameTooLarge) as info:
        d.next_message()
    assert (info.value.length, info.value.limit) == (LIMIT + 1, LIMIT)


def test_huge_length_prefix() -> None:
    d = decoder()
    d.feed(b"\xff\xff\xff\xff")
    with pytest.raises(FrameTooLarge):
        d.next_message()


def test_body_at_the_limit_is_accepted() -> None:
    message: Message = {"type": "x", "pad": b""}
    overhead = len(msgpack.packb(message, use_bin_type=True))
    # An empty bin is 2 bytes (bin8); a long one is bin16, one length byte more.
    message["pad"] = b"\x00" * (LIMIT - overhead - 1)
    frame = encode_frame(message, LIMIT)
    assert len(frame) == LENGTH_BYTES + LIMIT
    d = decoder()
    d.feed(frame)
    assert d.next_message() == message
    message["pad"] += b"\x00"
    with pytest.raises(FrameTooLarge):
        encode_frame(message, LIMIT)


def test_encode_refuses_a_message_over_the_limit() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame({"type": "x", "pad": b"\x00" * LIMIT}, LIMIT)


def test_truncated_frame_at_end_of_stream() -> None:
    frame = encode_frame({"type": "x", "v": 1}, LIMIT)
    d = decoder()
    d.feed(frame[:-1])
    assert d.next_message() is None
    with pytest.raises(FrameTruncated) as info:
        d.check_eof()
    assert info.value.buffered == len(frame) - 1


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # a byte msgpack never uses
        b"\x81\xa4type",  # map announces a value that never comes
        b"\x80\x00",  # trailing bytes after the object
        b"\x81\xa4type\xa1\xff",  # invalid UTF-8 in a str
        b"\xd6\xff\x00\x00\x00\x01",  # ext type (timestamp): not a plain value
        b"\x91" * 2000 + b"\x00",  # nesting deeper than the unpacker's stack
        b"\xdc\x00\x41" + b"\x00" * 65,  # array longer than the container limit
    ],
)
def test_undecodable_bodies(body: bytes) -> None:
    d = decoder()
    d.feed(frame_of(body))
    with pytest.raises(FrameDecodeError):
        d.next_message()


@pytest.mark.parametrize(
    "value",
    [[1, 2], "type", {"kind": "x"}, {"type": 5}, {"type": b"commit"}, 7],
)
def test_bodies_that_are_not_messages(value: object) -> None:
    d = decoder()
    d.feed(frame_of(msgpack.packb(value, use_bin_type=True)))
    with pytest.raises(BadMessage):
        d.next_message()


def test_empty_body_is_a_decode_error() -> None:
    d = decoder()
    d.feed(frame_of(b""))
    with pytest.raises(FrameDecodeError):
        d.next_message()


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=600), cut=st.integers(min_value=1, max_value=64))
def test_random_bytes_raise_only_declared_errors(data: bytes, cut: int) -> None:
    d = FrameDecoder(256, 16)
    try:
        for start in range(0, len(data), cut):
            d.feed(data[start : start + cut])
            while (message := d.next_message()) is not None:
                assert isinstance(message, dict) and isinstance(message["type"], str)
        d.check_eof()
    except FrameError:
        pass


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=300))
def test_random_bodies_behind_a_valid_prefix_raise_only_declared_errors(data: bytes) -> None:
    d = FrameDecoder(512, 16)
    d.feed(frame_of(data))
    try:
        message = d.next_message()
    except FrameError:
        return
    assert isinstance(message, dict) and isinstance(message["type"], str)
    assert d.buffered == 0


plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(st.text(max_size=8).filter(lambda k: k != "type"), plain, max_size=6),
    kind=st.text(max_size=12),
    cut=st.integers(min_value=1, max_value=50),
)
def test_any_plain_message_round_trips_across_chunk_boundaries(
    fields: dict[str, object], kind: str, cut: int
) -> None:
    message = {"type": kind, **fields}
    stream = encode_frame(message, LIMIT) * 2
    d = decoder()
    got = []
    for start in range(0, len(stream), cut):
        d.feed(stream[start : start + cut])
        while (decoded := d.next_message()) is not None:
            got.append(decoded)
    assert got == [message, message]
