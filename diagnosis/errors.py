"""Expected rejections raised by diagnosis/ (STYLE.md habit 2).

Each carries data a caller can show or count; a broken invariant is an `assert`.
"""

from __future__ import annotations

from enum import StrEnum


class DiagnosisError(Exception):
    """Base class of every expected diagnosis rejection."""


class MalformedMessage(DiagnosisError):
    """Bytes that do not decode to a SealedMessage."""


class PlaintextTooLarge(DiagnosisError):
    """A diagnosis plaintext above the size limit, refused before sealing."""

    def __init__(self, size_bytes: int, size_bytes_max: int) -> None:
        super().__init__(f"plaintext of {size_bytes} bytes exceeds {size_bytes_max}")
        self.size_bytes = size_bytes
        self.size_bytes_max = size_bytes_max


class RejectReason(StrEnum):
    """Why an Opener refused a sealed message, in the order the checks run."""

    MALFORMED = "malformed"
    UNKNOWN_SENDER = "unknown_sender"
    SENDER_KEY_INVALID = "sender_key_invalid"
    WRONG_RECEIVER = "wrong_receiver"
    STALE = "stale"
    REPLAY = "replay"
    REPLAY_CACHE_FULL = "replay_cache_full"
    BAD_SIGNATURE = "bad_signature"
    UNDECRYPTABLE = "undecryptable"


class MessageRejected(DiagnosisError):
    """A sealed message the receiver refused; `reason` is counted by the Opener."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail
