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
class Finalized:
    """Informational: `block` is final and app.finalize was already called."""

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


Action = Persist | Send | Finalized | ViewChanged | Suspected | Rejected | CatchUp | FaultDetected
