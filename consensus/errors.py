"""Expected rejections raised by consensus/ (style habits 2 and 12).

A peer can send anything: a malformed message is an `InvalidMessage` carrying a
`DecodeReason` (a fixed set: metric labels come from it) and a free-text detail for logs.
A well-formed message that does not fit the protocol state is dropped by the replica with
a `RejectReason` (consensus/actions.py `Rejected`); the replica decides whether it is
grounds for SUSPECT.
"""

from __future__ import annotations

from enum import StrEnum


class ConsensusError(Exception):
    """Base class of every expected consensus rejection."""


class DecodeReason(StrEnum):
    """Why a peer's message did not decode (consensus and sync messages, and the node's
    own checks of who may send what)."""

    NOT_A_MAP = "not-a-map"
    UNKNOWN_TYPE = "unknown-type"
    BAD_FIELDS = "bad-fields"  # missing or extra keys
    BAD_TYPE = "bad-type"  # a field of the wrong wire type
    OUT_OF_RANGE = "out-of-range"  # a number above its bound (view, height, count)
    BAD_LENGTH = "bad-length"  # bytes or a list of the wrong size
    UNKNOWN_SENDER = "unknown-sender"  # a sender or voter index not below n
    BAD_RECORD = "bad-record"  # a nested block or certificate that does not decode
    INCONSISTENT = "inconsistent"  # fields that contradict each other
    NOT_A_BOOKKEEPER = "not-a-bookkeeper"
    SENDER_MISMATCH = "sender-mismatch"
    BAD_RELAY_MESSAGE = "bad-relay-message"


class RejectReason(StrEnum):
    """Why a replica or block sync dropped a well-formed message."""

    UNKNOWN_SENDER = "unknown-sender"
    BAD_SIGNATURE = "bad-signature"
    NOT_FROM_PRIMARY = "not-from-primary"
    NOT_A_MEMBER = "not-a-member"
    NOT_ADDRESSED = "not-addressed"  # a message of a view this replica's role never receives
    DECODE_BUDGET = "decode-budget"  # its block would take the peer over its decode budget
    UNSOLICITED = "unsolicited"  # blocks no request of this node asked for
    BAD_VIEW_CHANGE = "bad-view-change"
    BAD_VC_FINAL = "bad-vc-final"
    BAD_CERTIFICATE = "bad-certificate"
    BAD_VOTE = "bad-vote"
    BAD_BLOCK = "bad-block"  # undecodable, or its number is not the sequence number
    INVALID_BLOCK = "invalid-block"  # does not execute on the final head
    CONFLICT = "conflict"  # two proposals or votes for one height
    OUT_OF_SEQUENCE = "out-of-sequence"
    CLOCK_AHEAD = "clock-ahead"  # block time beyond clock_drift_ms_max ahead of our clock
    BAD_VC_CONFIRM = "bad-vc-confirm"  # a member confirmed another VIEW-CHANGE set
    BAD_FAULT_PROOF = "bad-fault-proof"  # a FAULT notice whose proof does not hold


class InvalidMessage(ConsensusError):
    """A message that is malformed or may not come from this peer."""

    def __init__(self, reason: DecodeReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail
