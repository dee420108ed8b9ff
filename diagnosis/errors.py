"""Expected rejections raised by diagnosis/ (style habit 2).

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
    INBOX_FULL = "inbox_full"  # an agent's inbox holds its limit of messages still being decided
    BAD_SIGNATURE = "bad_signature"
    UNDECRYPTABLE = "undecryptable"


class MessageRejected(DiagnosisError):
    """A sealed message the receiver refused; `reason` is counted by the Opener."""

    def __init__(self, reason: RejectReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


class Refusal(StrEnum):
    """Why an agent refused a message that opened fine: it is not one the protocol lets
    this sender send to this receiver at this step (diagnosis/authorise.py)."""

    BAD_PAYLOAD = "bad_payload"
    UNPROVEN_STATE = "unproven_state"
    SENDER_CHANGED = "sender_changed"  # revoked or rekeyed between sigma's check and the proven facts
    UNKNOWN_REQUEST = "unknown_request"
    REQUEST_NOT_ACTIVE = "request_not_active"
    WRONG_STEP = "wrong_step"
    STEP_REPEATED = "step_repeated"
    NOT_REQUESTER = "not_requester"  # the sender is not the request's device
    NOT_MY_REQUEST = "not_my_request"  # the receiving device is not the request's device
    NOT_ASSIGNED = "not_assigned"  # the receiving node is not assigned to the request
    SENDER_NOT_ASSIGNED = "sender_not_assigned"  # the sending node is not assigned to the request
    CREW_NOT_OF_ASSIGNED = "crew_not_of_assigned"  # not a crew registered by the assigned node
    NOT_MY_NODE = "not_my_node"  # a briefing from a node the crew does not work for
    NOT_BOUND_DEVICE = "not_bound_device"  # the device is not bound to the receiving smartphone
    NOT_MY_DEVICE = "not_my_device"  # the vendor did not sell the device
    OUT_OF_WARRANTY = "out_of_warranty"


class Refused(DiagnosisError):
    """A well-formed, authentic message the protocol does not allow here. `held`, for
    `step_repeated`: the hash of the copy of that step the receiver accepted before (its
    sender, the only one the step allows, logs that hash)."""

    def __init__(self, reason: Refusal, detail: str = "", held: bytes | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail
        self.held = held
