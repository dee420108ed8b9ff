"""The paper's secure diagnosis protocol (Section V).

Public face: sealed messages C || ID_v || ID_k || T || sigma (`seal`, `SealedMessage`) and
their receiver (`Opener`, fed by a `MemberDirectory`), with the rejections of
`diagnosis.errors`.
"""

from diagnosis.errors import (
    DiagnosisError,
    MalformedMessage,
    MessageRejected,
    PlaintextTooLarge,
    RejectReason,
)
from diagnosis.message import (
    MemberDirectory,
    MemberId,
    OpenedMessage,
    Opener,
    SealedMessage,
    seal,
)

__all__ = [
    "DiagnosisError",
    "MalformedMessage",
    "MemberDirectory",
    "MemberId",
    "MessageRejected",
    "OpenedMessage",
    "Opener",
    "PlaintextTooLarge",
    "RejectReason",
    "SealedMessage",
    "seal",
]
