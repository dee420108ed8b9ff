"""Expected rejections raised by p2p/ (style habit 2).

Every error that ends a connection names the reason it is counted and logged under
(`reason`, a short stable code); `P2PCounters` has one `disconnect_<reason>` field per
code. A broken invariant inside the transport is an `assert`, not one of these.
"""

from __future__ import annotations

from typing import ClassVar


class P2PError(Exception):
    """Base class of every expected p2p rejection."""

    reason: ClassVar[str] = "error"


class P2PConfigError(P2PError):
    """A P2PConfig value out of range; names the field and the value."""

    reason = "config"

    def __init__(self, field: str, value: object, rule: str) -> None:
        super().__init__(f"p2p config {field}={value!r}: {rule}")
        self.field = field
        self.value = value
        self.rule = rule


# --- framing ---------------------------------------------------------------------------


class FrameError(P2PError):
    """Bytes from a peer that are not a valid frame; the connection is closed."""


class FrameTooLarge(FrameError):
    """A length prefix (or an outgoing message) above the frame limit."""

    reason = "frame_oversize"

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the limit of {limit}")
        self.length = length
        self.limit = limit


class FrameTruncated(FrameError):
    """The stream ended in the middle of a frame."""

    reason = "frame_truncated"

    def __init__(self, buffered: int) -> None:
        super().__init__(f"stream ended with {buffered} bytes of an unfinished frame")
        self.buffered = buffered


class FrameDecodeError(FrameError):
    """A frame body that msgpack refuses (bad format, limits, trailing bytes, bad UTF-8)."""

    reason = "frame_decode"

    def __init__(self, detail: str) -> None:
        super().__init__(f"undecodable frame body: {detail}")
        self.detail = detail


class BadMessage(FrameError):
    """A decoded body that is not a dict with a str "type"."""

    reason = "bad_message"

    def __init__(self, detail: str) -> None:
        super().__init__(f"malformed message: {detail}")
        self.detail = detail


class FrameForged(FrameError):
    """A sealed frame whose tag fails (p2p/secure.py): changed, injected, replayed, or one
    after a frame that went missing. Nothing of it is decoded."""

    reason = "frame_forged"

    def __init__(self, index: int) -> None:
        super().__init__(f"frame {index} of the link fails authentication")
        self.index = index


class ProtocolViolation(P2PError):
    """A well-formed message that the transport protocol does not allow at this point."""

    reason = "protocol"

    def __init__(self, detail: str) -> None:
        super().__init__(f"protocol violation: {detail}")
        self.detail = detail


# --- handshake -------------------------------------------------------------------------


class HandshakeError(P2PError):
    """The peer could not be authenticated; the connection is refused and closed."""

    reason = "handshake"


class WrongChain(HandshakeError):
    reason = "wrong_chain"

    def __init__(self, expected: int, got: object) -> None:
        super().__init__(f"wrong chain id: expected {expected}, got {got!r}")
        self.expected = expected
        self.got = got


class UnknownPeer(HandshakeError):
    """The peer's key is not in the allowed set (bookkeepers and registered observers)."""

    reason = "unknown_key"

    def __init__(self, public_key: bytes) -> None:
        super().__init__(f"peer key {public_key.hex()[:16]}... is not allowed")
        self.public_key = public_key


class SelfConnection(HandshakeError):
    reason = "self"

    def __init__(self) -> None:
        super().__init__("connection to ourselves")


class BadProof(HandshakeError):
    """The peer's signature over our challenge does not verify under its key."""

    reason = "bad_proof"

    def __init__(self, public_key: bytes) -> None:
        super().__init__(f"peer {public_key.hex()[:16]}... failed to prove its key")
        self.public_key = public_key


class MalformedHandshake(HandshakeError):
    """A handshake message with missing or ill-typed fields, or the wrong type."""

    reason = "handshake_malformed"

    def __init__(self, detail: str) -> None:
        super().__init__(f"malformed handshake: {detail}")
        self.detail = detail


class EncryptionMismatch(HandshakeError):
    """One side speaks the encrypted protocol and the other the plain one ([p2p] encryption)."""

    reason = "encryption_mismatch"

    def __init__(self, ours: bool) -> None:
        theirs = "plain" if ours else "encrypted"
        super().__init__(f"peer speaks the {theirs} protocol; this node's [p2p] encryption = {str(ours).lower()}")
        self.ours = ours


class HandshakeTimeout(HandshakeError):
    reason = "handshake_timeout"

    def __init__(self, timeout_ms: int) -> None:
        super().__init__(f"handshake not finished within {timeout_ms} ms")
        self.timeout_ms = timeout_ms


class PeerClosed(P2PError):
    """The peer closed the stream at a frame boundary (clean end of stream)."""

    reason = "eof"

    def __init__(self) -> None:
        super().__init__("peer closed the connection")
