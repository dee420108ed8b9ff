"""Timing and fault-mode knobs of one XPaxos replica (all durations in milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass, field

BYZANTINE_MODES = ("equivocate", "bad-signature", "wrong-roots", "omit-entries", "silent",
                   "drop-log")
# Test-only modes under which the replica's own ledger leaves the final chain: it finalizes
# what its group never did. "withhold-commit" (a t = 1 follower): it logs a proposal with
# the primary's vote and its own (a full certificate), never sends its COMMIT, appends the
# block to its own chain, leaves the protocol, and its node announces a head far ahead so
# that nodes catching up ask it first (the observer-fork attack, docs/faults.md).
FORKING_MODES = ("withhold-commit",)


# Timing presets written by `node.py init --timing` into [consensus] (docs/deployment.md,
# "Timing"). Recovery from a crashed primary takes about commit_timeout_ms (detection) +
# 2 delta_ms (the VIEW-CHANGE wait when a replica is missing) + 3 round trips (VIEW-CHANGE,
# VC-FINAL, NEW-VIEW); every timeout stretches with the measured block cycle and doubles per
# failed view, so a larger Δ costs recovery time, never safety.
TIMING_PRESETS: dict[str, dict[str, int]] = {
    # one machine: ConsensusConfig's defaults (Δ covers a loaded 2-core box, not the wire)
    "loopback": {},
    # one site, RTT < 1 ms: Δ is the slowest a host may be (GC, fsync, a busy loop), not the wire
    "lan": {"delta_ms": 250, "commit_timeout_ms": 1_500, "view_change_timeout_ms": 1_500,
            "retransmit_ms": 300, "clock_drift_ms_max": 1_000},
    # organisations in different datacenters: Δ = 1.25 s as XFT (§5) chose from measured
    # inter-datacenter round trips; a crash is suspected after 500 ms without progress (10 RTT
    # at 50 ms) plus twice the measured block cycle (~2 x 150 ms at 50 ms RTT), so detection
    # stays within the 1 s of the recovery goal 2Δ + 3 RTT + 1 s (a primary's crash costs one
    # view change, chain.certificate's group order); a view change gets 2Δ + 500 ms (VC-FINAL
    # and NEW-VIEW, a few RTT) before the next view is tried (the next group may hold a
    # crashed follower); retransmissions wait for several RTT.
    "wan": {"delta_ms": 1_250, "commit_timeout_ms": 500, "view_change_timeout_ms": 3_000,
            "retransmit_ms": 1_000, "clock_drift_ms_max": 2_500},
}


@dataclass(frozen=True)
class ConsensusConfig:
    t: int
    # Δ of the paper: the bound on message delay among synchronous replicas. Loopback; init --timing lan|wan.
    delta_ms: int = 100
    # An idle primary waits this long after the first pending transaction before proposing,
    # so that a burst lands in one block (work queued behind a block goes out once it is stored).
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
    # XFT §4.4 (docs/consensus.md "Fault detection"): VC-CONFIRM after VC-FINAL, state loss and
    # forks named with proofs. Off: the view change is one round shorter and detects nothing.
    fault_detection: bool = True
    # Bytes of blocks one peer may make this node decode for nothing, per second
    # (consensus/admission.py): a token bucket per peer, charged for the blocks in its consensus
    # messages and in the block sync answers it was asked for, given back for each that is of
    # use (executes, is final, certifies a log entry, is applied). Over it a message is dropped
    # and counted (rejected reason decode-budget). Decoding runs at 1.3-6.5 MiB/s of small
    # transactions on two shared cores, so a peer sending junk gets at most 10-40 % of one.
    decode_bytes_per_s: int = field(default=512 << 10, metadata={"min": 1})
    # The bucket's size: at least genesis block_bytes_max plus the frame envelope (checked at
    # start), so the largest block an honest primary may propose always fits.
    decode_burst_bytes: int = field(default=8 << 20, metadata={"min": 1})
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
        if self.decode_bytes_per_s < 1 or self.decode_burst_bytes < 1:
            raise ValueError("decode_bytes_per_s and decode_burst_bytes must be positive")
