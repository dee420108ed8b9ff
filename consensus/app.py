"""The interface consensus/ needs from the ledger (implemented by chain/, faked in tests)."""

from __future__ import annotations

from typing import Protocol

from chain import Block


class Application(Protocol):
    def final_height(self) -> int:
        """Height of the final head; genesis is height 0 and always final."""
        ...

    def final_hash(self) -> bytes: ...

    def pending_transactions(self) -> int:
        """Mempool size: to decide proposing and to detect a primary that does not."""
        ...

    def propose(self, height: int, view: int, proposer: int, clock_ms: int,
                budget_ms: int | None = None) -> Block | None:
        """A new executed block at final_height()+1 from the mempool, or None when idle,
        dated max(parent time + 1, clock_ms) (the node's wall clock); built within
        `budget_ms` of CPU time when given (the replica's slow start), else the app's own."""
        ...

    def check(self, block: Block) -> None:
        """Validate and execute `block` on top of the final head; raise LedgerError if wrong."""
        ...

    def finalize(self, block: Block) -> None:
        """Append `block` (certificate included) as the new final head, atomically, durably,
        with the consensus record it makes true (no log entry at or below it)."""
        ...

    def final_block(self, height: int) -> Block | None:
        """A final block with its certificate, or None above the head or below the
        store's base (pruned, or never held by a node that joined by snapshot)."""
        ...
