"""Wire frames: a 4-byte big-endian body length, then a msgpack body (architecture decision 1).

`encode_frame` turns a message into frame bytes; `FrameDecoder` cuts frames out of a byte
stream fed in arbitrary chunks. The length prefix is checked against the limit as soon as
its 4 bytes arrive, before any of the body is buffered, and msgpack unpacks with explicit
length limits, so a hostile peer can make us hold at most one frame limit of its bytes.
Every failure is one of the FrameError subclasses of p2p/errors.py; the caller closes the
connection it came from.

On an encrypted link the decoder is given the link's opener (p2p/secure.py) once the keys
are agreed: every later frame is opened (its tag checked) before any byte of it is
unpacked, and the length limit allows for the tag.

A message is a dict with a str "type"; the rest of its contents belong to whoever sends it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import msgpack

from p2p.errors import BadMessage, FrameDecodeError, FrameTooLarge, FrameTruncated, PeerClosed

LENGTH_BYTES = 4
# The prefix is 32 bits; this caps any configured limit.
LENGTH_MAX = 2**32 - 1

Message = dict[str, Any]


class Opener(Protocol):
    """Turns a sealed frame into its body, or raises a FrameError (p2p/secure.py)."""

    overhead_bytes: int

    def open(self, header: memoryview, sealed: memoryview) -> bytes: ...


def encode_frame(message: Message, frame_bytes_max: int) -> bytes:
    """Frame `message`; FrameTooLarge if its body exceeds `frame_bytes_max`."""
    assert isinstance(message, dict) and isinstance(message.get("type"), str), message
    body: bytes = msgpack.packb(message, use_bin_type=True)
    if len(body) > frame_bytes_max:
        raise FrameTooLarge(len(body), frame_bytes_max)
    return len(body).to_bytes(LENGTH_BYTES, "big") + body


def decode_body(body: bytes | memoryview, container_len_max: int) -> Message:
    """Unpack one frame body into a message, or raise FrameDecodeError / BadMessage."""
    try:
        value = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=len(body),
            max_bin_len=len(body),
            max_array_len=container_len_max,
            max_map_len=container_len_max,
            # No ext types (timestamps included): messages carry plain values only.
            max_ext_len=0,
        )
    # msgpack reports malformed input through ValueError and its subclasses (FormatError,
    # StackError, ExtraData, UnicodeDecodeError); hostile bytes must never escape as
    # anything but our own error.
    except ValueError as exc:
        raise FrameDecodeError(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(value, dict):
        raise BadMessage(f"body is a {type(value).__name__}, not a map")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise BadMessage('no str "type" field')
    return value


class FrameDecoder:
    """Incremental decoder for one connection's inbound byte stream."""

    def __init__(self, frame_bytes_max: int, container_len_max: int) -> None:
        assert 0 < frame_bytes_max <= LENGTH_MAX
        self.frame_bytes_max = frame_bytes_max
        self.container_len_max = container_len_max
        self._buffer = bytearray()
        self._opener: Opener | None = None
        self._overhead_bytes = 0

    def set_limit(self, frame_bytes_max: int) -> None:
        """Raise or lower the frame limit (the handshake uses a smaller one)."""
        assert 0 < frame_bytes_max <= LENGTH_MAX
        self.frame_bytes_max = frame_bytes_max

    def set_opener(self, opener: Opener) -> None:
        """Open every frame not yet cut out with `opener` (the link is now encrypted)."""
        assert self._opener is None
        self._opener = opener
        self._overhead_bytes = opener.overhead_bytes

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_message(self) -> Message | None:
        """The next complete message, or None until more bytes are fed.

        Raises FrameTooLarge as soon as a length prefix above the limit is buffered.
        """
        buffer = self._buffer
        if len(buffer) < LENGTH_BYTES:
            return None
        length = int.from_bytes(buffer[:LENGTH_BYTES], "big")
        if length > self.frame_bytes_max + self._overhead_bytes:
            raise FrameTooLarge(length, self.frame_bytes_max + self._overhead_bytes)
        end = LENGTH_BYTES + length
        if len(buffer) < end:
            return None
        # Unpack (or open) straight from the buffer, without copying the frame; the views
        # must be released before the buffer can shrink. Dropping a bytearray's head is
        # cheap in CPython (it moves a start offset), so a chunk of many small frames
        # stays linear.
        view = memoryview(buffer)
        try:
            if self._opener is None:
                with view[LENGTH_BYTES:end] as body:
                    message = decode_body(body, self.container_len_max)
            else:
                with view[:LENGTH_BYTES] as header, view[LENGTH_BYTES:end] as sealed:
                    opened = self._opener.open(header, sealed)
                message = decode_body(opened, self.container_len_max)
        finally:
            view.release()
        del buffer[:end]
        return message

    def check_eof(self) -> None:
        """Call when the stream ends: FrameTruncated if part of a frame is left over."""
        if self._buffer:
            raise FrameTruncated(len(self._buffer))

    @property
    def buffered(self) -> int:
        return len(self._buffer)


async def read_message(
    reader: asyncio.StreamReader, decoder: FrameDecoder, read_bytes_max: int
) -> Message:
    """The next message of the stream; PeerClosed at a clean end, FrameTruncated mid-frame."""
    while (message := decoder.next_message()) is None:
        data = await reader.read(read_bytes_max)
        if not data:
            decoder.check_eof()
            raise PeerClosed()
        decoder.feed(data)
    return message
