"""What a replica asks its node to do (sans-IO: the replica itself never does I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from chain import Block
from consensus.errors import RejectReason
from consensus.messages import FaultNotice, Message
from consensus.storage import StoredState


@dataclass(frozen=True)
class Send:
    """Deliver `message` to bookkeeper `to` (an index in genesis order)."""

    to: int
    message: Message


@dataclass(frozen=True)
class Persist:
    """Write `state` to the consensus storage, durably, before carrying out any action that
    follows it: those are the votes and messages it guards (a kill -9 after them must not
    make the restarted replica contradict them)."""

    state: StoredState


@dataclass(frozen=True)
class Finalize:
    """Make `block` (with its finality proof) the final head and write `state` with it, in
    ONE store transaction, before carrying out any action that follows (the FINALs that
    announce it): a kill -9 leaves both or neither, never a block without the record that
    truncated the log below it (architecture decision 3). The replica learns that the head
    moved at its next input; it asks for one at once (`next_deadline`)."""

    block: Block
    state: StoredState


@dataclass(frozen=True)
class Propose:
    """Build block `height` of `view` from the mempool (`Application.propose` with these
    arguments) and hand it back, or None when there is nothing to propose, with
    `Replica.on_proposal` before any other input (consensus/loop.py does both). The
    PREPARE that carries it follows from that input."""

    height: int
    view: int
    proposer: int
    clock_ms: int
    budget_ms: int | None


@dataclass(frozen=True)
class Check:
    """Execute `block` on the final head (`Application.check`) and hand the outcome back,
    the LedgerError or None, with `Replica.on_checked(block.hash, ...)` before any other
    input (consensus/loop.py). The vote, NEW-VIEW or finalize that needs it follows from
    that input. Never in the same output as a `Finalize`: the head it runs on is the one
    the replica reasoned on."""

    block: Block


@dataclass(frozen=True)
class ViewChanged:
    view: int


@dataclass(frozen=True)
class Suspected:
    """This replica suspected `view` (logs and metrics)."""

    view: int
    reason: str


@dataclass(frozen=True)
class Rejected:
    """A message from `sender` was dropped as invalid: `reason` labels the metric (a
    fixed set), `detail` is for the log line."""

    sender: int
    reason: RejectReason
    detail: str = ""


@dataclass(frozen=True)
class FaultDetected:
    """Bookkeeper `notice.accused` is proven faulty (`notice.kind`: "state-loss" or "fork"):
    found by this replica or forwarded and checked. Once per accused and kind; the replica
    has already forwarded the proof to every other replica (logs, metrics, RPC)."""

    notice: FaultNotice
    found_here: bool


@dataclass(frozen=True)
class CatchUp:
    """Bookkeeper `peer` holds final blocks up to at least `height`: fetch them by block sync."""

    peer: int
    height: int


Action = Persist | Send | Finalize | Propose | Check | ViewChanged | Suspected | Rejected | CatchUp | \
    FaultDetected
