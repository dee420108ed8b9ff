"""The bookkeeper schedule learnt from genesis, never told (docs/consensus.md "Governance").

Whoever checks a block without having executed the chain (a light client, a node joining
by snapshot) knows only the genesis set. The state at height h holds every set up to
h + activation_distance (chain/epochs.py), so the genesis set's word is good for heights
1..activation_distance, and a certified header at height h, with a proof of the schedule
against its state root, extends what is known to h + activation_distance. `ScheduleWalk`
takes those steps one at a time: each step's header must be certified by the set that the
steps before it established. A step may not skip ahead: a skipped stretch could hold a
change, and the keys it removed could then sign a whole other history (the long-range
problem every BFT light client has). So a walk to height H takes (H - 1) // distance steps,
however few the changes (docs/consensus.md gives the bound and what would lower it).

A `WalkStep` is the evidence of one step: the header at height k * activation_distance,
its certificate with the finality proof, and the state-trie nodes proving the schedule's
slot. Every node can make the step of a height whose block and state it holds (`make_step`);
pruning keeps the steps of the heights whose blocks it deletes (chain.store `walk` db),
and a snapshot carries the steps below its height, so a snapshot-joined node serves the
walk it was served.
"""

from __future__ import annotations

from collections.abc import Iterator

import rlp
from rlp.sedes import CountableList, binary
from trie.exceptions import MissingTrieNode

from chain.certificate import verify_finality
from chain.chain import Chain
from chain.epochs import EPOCHS_KEY, GOVERNANCE, Epoch, epoch_at
from chain.errors import DecodeError, InvalidCertificate, LedgerError
from chain.proofs import InvalidProof, prove_state, verify_proof
from chain.state import storage_key, trie_key
from chain.types import BlockHeader, CommitCertificate, decode
from chain.values import value_from_bytes

SCHEDULE_KEY = storage_key(GOVERNANCE, EPOCHS_KEY)  # the contract's slot holding the schedule
PROOF_NODES_MAX = 64  # a trie path is at most 64 nibbles deep


class BadWalk(LedgerError):
    """A step that does not extend the schedule: wrong height, not final under the set
    the walk knows for its height, or its schedule proof does not verify or disagrees."""


class StepUnavailable(LedgerError):
    """No step is kept for a height, and its block or state is not held either."""


class WalkStep(rlp.Serializable):
    fields = [
        ("header", BlockHeader),
        ("certificate", CommitCertificate),
        ("proof", CountableList(binary, max_length=PROOF_NODES_MAX)),  # rlp of each node, root first
    ]


def make_step(chain: Chain, height: int) -> bytes:
    """The encoded step at `height`, from the block and state this chain holds there
    (raises StepUnavailable when it does not)."""
    try:
        block = chain.block(height)
        proof = prove_state(chain, SCHEDULE_KEY, height)
    except (LedgerError, MissingTrieNode) as exc:
        raise StepUnavailable(f"no schedule step at height {height}: {exc}") from exc
    if not block.certificate:
        raise StepUnavailable(f"block {height} has no finality proof to make a step of")
    return rlp.encode(WalkStep(block.header, block.certificate[0], [rlp.encode(node) for node in proof.nodes]))


def step_heights(activation_distance: int, below: int) -> range:
    """The heights of the steps a walk from genesis takes to know the set of `below`."""
    return range(activation_distance, below, activation_distance)


def walk_steps(chain: Chain, below: int, activation_distance: int) -> Iterator[bytes]:
    """The encoded steps up to the set of `below`: kept ones (below the store's base), else
    made from the blocks and states held. Reads the store only (safe on a worker thread
    that holds `store.reading()` around it)."""
    for height in step_heights(activation_distance, below):
        yield chain.store.walk_step(height) or make_step(chain, height)


class ScheduleWalk:
    """The schedule known so far, from the genesis set (the trust anchor) forward."""

    def __init__(self, chain_id: int, genesis: Epoch, activation_distance: int) -> None:
        assert genesis.start == 1 and activation_distance >= 1
        self.chain_id = chain_id
        self.activation_distance = activation_distance
        self.epochs: tuple[Epoch, ...] = (genesis,)
        self.known_until = activation_distance  # the genesis state's schedule reaches this far

    def covers(self, height: int) -> bool:
        return height <= self.known_until

    def certifiers(self, height: int) -> Epoch:
        """The set of `height`; only for a height the walk covers."""
        assert self.covers(height), f"height {height} lies beyond the walk ({self.known_until})"
        return epoch_at(self.epochs, height)

    def advance(self, header: BlockHeader, schedule: object) -> None:
        """Take the schedule proven against `header`, certified by `certifiers(header.number)`
        (the caller checked that), as the step at `known_until`. Raises BadWalk."""
        if header.number != self.known_until:
            raise BadWalk(f"a step at height {header.number}, the walk is at {self.known_until}")
        if not isinstance(schedule, list) or not schedule:
            raise BadWalk(f"block {header.number} proves no bookkeeper schedule")
        try:
            epochs = tuple(Epoch.from_value(item) for item in schedule)
        except AssertionError as exc:  # Epoch.from_value asserts the stored shape
            raise BadWalk(f"block {header.number} proves a malformed schedule") from exc
        # The schedule only grows: what was known stays (else the step is of another chain).
        if epochs[:len(self.epochs)] != self.epochs or any(
                a.start >= b.start for a, b in zip(epochs, epochs[1:], strict=False)):
            raise BadWalk(f"block {header.number} proves a schedule that does not extend the known one")
        self.epochs = epochs
        self.known_until = header.number + self.activation_distance

    def add(self, raw: bytes) -> None:
        """Check one encoded WalkStep and advance; raises BadWalk (or DecodeError)."""
        step = decode(raw, WalkStep)
        height = step.header.number
        if height != self.known_until:
            raise BadWalk(f"a step at height {height}, the walk is at {self.known_until}")
        certifiers = self.certifiers(height)
        try:
            verify_finality(step.certificate, chain_id=self.chain_id, height=height, block_hash=step.header.hash,
                            bookkeepers=list(certifiers.keys), t=certifiers.t)
            nodes = [rlp.decode(node) for node in step.proof]
            raw_schedule = verify_proof(step.header, "state", trie_key(SCHEDULE_KEY), nodes)
            schedule = value_from_bytes(raw_schedule) if raw_schedule else None
        except (InvalidCertificate, InvalidProof, DecodeError, rlp.DecodingError) as exc:
            raise BadWalk(f"step {height}: {exc}") from exc
        self.advance(step.header, schedule)
