"""Timing and fault-mode knobs of one XPaxos replica (all durations in milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass

BYZANTINE_MODES = ("equivocate", "bad-signature", "wrong-roots", "omit-entries", "silent")
# Test-only modes under which the replica's own ledger leaves the final chain: it finalizes
# what its group never did. "withhold-commit" (a t = 1 follower): it logs a proposal with
# the primary's vote and its own (a full certificate), never sends its COMMIT, appends the
# block to its own chain, leaves the protocol, and its node announces a head far ahead so
# that nodes catching up ask it first (the observer-fork attack, docs/faults.md).
FORKING_MODES = ("withhold-commit",)


@dataclass(frozen=True)
class ConsensusConfig:
    t: int
    # Δ of the paper: the bound on message delay among synchronous replicas. Loopback.
    delta_ms: int = 100
    # The primary waits this long after the first pending transaction before proposing,
    # so that a burst lands in one block.
    batch_timeout_ms: int = 5
    # An active replica with pending work and no finalized block for this long suspects.
    commit_timeout_ms: int = 1_500
    retransmit_ms: int = 300  # unanswered consensus messages are sent again after this long
    # Must exceed 2Δ plus a few round trips: the VIEW-CHANGE wait alone is 2Δ.
    view_change_timeout_ms: int = 1_000
    empty_blocks: bool = False  # an idle chain makes no blocks unless set
    empty_block_interval_ms: int = 1_000  # with empty_blocks: one block at least this often
    # A member refuses (and suspects) a proposal whose block time is further ahead of its
    # own wall clock than this; at least delta_ms (docs/consensus.md "Block time").
    clock_drift_ms_max: int = 1_000
    # Test-only misbehaviour, one of BYZANTINE_MODES or FORKING_MODES; None for an honest replica.
    byzantine: str | None = None

    def __post_init__(self) -> None:
        if self.t < 1:
            raise ValueError("t must be at least 1")
        if self.byzantine is not None and self.byzantine not in BYZANTINE_MODES + FORKING_MODES:
            raise ValueError(f"unknown byzantine mode {self.byzantine!r}")
        if self.view_change_timeout_ms <= 2 * self.delta_ms:
            raise ValueError("view_change_timeout_ms must exceed 2 * delta_ms")
        if self.clock_drift_ms_max < self.delta_ms:
            raise ValueError("clock_drift_ms_max must be at least delta_ms")
