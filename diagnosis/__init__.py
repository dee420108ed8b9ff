"""The paper's secure diagnosis protocol (Section V).

Public face: sealed messages C || ID_v || ID_k || T || sigma (`seal`, `SealedMessage`) and
their receiver (`Opener`, fed by a `MemberDirectory`), with the rejections of
`diagnosis.errors`. Around them: `protocol` (Figs. 5-8 as data), `authorise` (who may send
what), `ledger` / `lightclient` / `directory` (the chain, read by proof), `agents` and
`channel` (the parties and their inboxes), `services` / `store` / `process` /
`agentconfig` / `fleet` (the parties reacting to the chain, as processes), `report` (what
happened to a request, from the agents' events), `demo` (the consortium `node.py demo`
runs and watches), `overhead` (Tables 3 and 4); docs/diagnosis.md.
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
