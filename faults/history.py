"""The run's record, Jepsen style: every client operation as an invoke and one completion
(ok, fail, or info = outcome unknown), the fault timeline, and periodic samples of every
node's chain status. Times are seconds of time.monotonic() relative to the run's start.

    ok    the transaction's receipt was read from a node: it is final
    fail  the node definitely refused it (a JSON-RPC rejection, or the connection was
          refused so nothing was sent): it must never become final
    info  unknown (a timeout, a node that died mid-request, no receipt in time): it may or
          may not become final, and the checker only reports which
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
ADMITTED_NO_RECEIPT = "admitted, no receipt in time"


@dataclass
class Op:
    id: int
    client: int
    node: int
    tx: str  # 0x tx hash: the transaction's unique id
    sender: str
    nonce: int
    invoke: float
    outcome: str = INVOKE
    complete: float | None = None
    detail: str = ""
    block: int | None = None  # block number of the receipt (ok only)
    block_hash: str | None = None

    def latency(self) -> float | None:
        return None if self.complete is None or self.outcome != OK else self.complete - self.invoke


@dataclass
class Event:
    time: float
    kind: str  # "fault", "heal", "note"
    action: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sample:
    time: float
    node: int
    height: int
    head: str
    view: int | None
    primary: str | None


class History:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.ops: list[Op] = []
        self.events: list[Event] = []
        self.samples: list[Sample] = []
        self.fault_windows: list[tuple[float, float]] = []  # [fault start, heal)
        self._open_fault: float | None = None
        self.notes: dict[str, Any] = {}
        self.restarts: list[tuple[float, int]] = []  # (time, node): its mempool was lost

    def now(self) -> float:
        return time.monotonic() - self.start

    def invoke(self, client: int, node: int, tx: str, sender: str, nonce: int) -> Op:
        op = Op(len(self.ops), client, node, tx, sender, nonce, self.now())
        self.ops.append(op)
        return op

    def complete(self, op: Op, outcome: str, detail: str = "", block: int | None = None,
                 block_hash: str | None = None) -> None:
        assert op.outcome == INVOKE, f"op {op.id} completed twice"
        op.outcome, op.complete, op.detail, op.block, op.block_hash = outcome, self.now(), detail, block, block_hash

    def fault(self, action: str, **detail: Any) -> None:
        """A fault begins (windows nest: the window closes at the next heal)."""
        self.events.append(Event(self.now(), "fault", action, detail))
        if self._open_fault is None:
            self._open_fault = self.now()

    def heal(self, action: str = "heal", **detail: Any) -> None:
        self.events.append(Event(self.now(), "heal", action, detail))
        if self._open_fault is not None:
            self.fault_windows.append((self._open_fault, self.now()))
            self._open_fault = None

    def note(self, action: str, **detail: Any) -> None:
        self.events.append(Event(self.now(), "note", action, detail))

    def close_windows(self) -> None:
        if self._open_fault is not None:
            self.fault_windows.append((self._open_fault, self.now()))
            self._open_fault = None

    def in_fault(self, start: float, end: float) -> bool:
        return any(start < b and end > a for a, b in self.fault_windows)

    def heals(self) -> list[float]:
        return [e.time for e in self.events if e.kind == "heal"]

    def timeline(self) -> list[dict[str, Any]]:
        return [{"t": round(e.time, 3), "kind": e.kind, "action": e.action, **e.detail} for e in self.events]

    def ops_json(self) -> list[dict[str, Any]]:
        return [asdict(op) for op in self.ops]
