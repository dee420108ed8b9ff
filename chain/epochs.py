"""Who certifies which height: the bookkeeper set by epoch (docs/consensus.md "Governance").

An epoch is a run of heights certified by one bookkeeper set: its first height `start`, the
n = 2t+1 Ed25519 node keys in index order, and t. The genesis set certifies from height 1;
a change the governance contract accepts in block A starts an epoch at A +
`activation_distance`, so the state at any final head H already holds the set of every
height up to H + activation_distance, and block sync, `verify`, the light client and the
replicas all read the set of a block from the chain itself, never from a node's word.
The schedule only grows, so the head's schedule also gives the set of every old block.

The schedule is kept by the governance contract (contracts/governance.py) at this
well-known address; this module is its one codec, below both the contract and its readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chain.state import State
from chain.values import Value
from vm import BlockEnv, Engine
from vm.contract import well_known_address

GOVERNANCE = well_known_address(7)
EPOCHS_KEY = b"epochs"  # the governance contract's slot holding the schedule
# n at most: a replica enumerates the C(n, t+1) synchronous groups (6,435 for n = 15).
BOOKKEEPERS_MAX = 15
KEY_BYTES = 32


@dataclass(frozen=True)
class Epoch:
    start: int  # the first height this set certifies
    keys: tuple[bytes, ...]  # Ed25519 node keys, index order
    t: int

    @property
    def n(self) -> int:
        return len(self.keys)

    def to_value(self) -> Value:
        return [self.start, list(self.keys), self.t]

    @classmethod
    def from_value(cls, value: Value) -> Epoch:
        assert isinstance(value, list) and len(value) == 3, "an epoch is [start, keys, t]"
        start, keys, t = value
        assert isinstance(start, int) and isinstance(t, int) and isinstance(keys, list)
        assert all(isinstance(key, bytes) for key in keys)
        return cls(start, tuple(key for key in keys if isinstance(key, bytes)), t)


def epoch_at(epochs: Sequence[Epoch], height: int) -> Epoch:
    """The epoch whose set certifies `height` (the last one starting at or below it)."""
    found = [epoch for epoch in epochs if epoch.start <= max(height, 1)]
    assert found, "the genesis epoch starts at height 1"
    return found[-1]


def read_activation_distance(engine: Engine, state: State, env: BlockEnv) -> int:
    """Blocks from a change's acceptance to its first height (a genesis parameter)."""
    value = engine.call_view(state, GOVERNANCE, "parameters", [], env)
    assert isinstance(value, list) and isinstance(value[0], int)
    return value[0]


def read_epochs(engine: Engine, state: State, env: BlockEnv) -> tuple[Epoch, ...]:
    """The schedule as of `state`: every epoch accepted so far, the genesis one first."""
    value = engine.call_view(state, GOVERNANCE, "epochs", [], env)
    assert isinstance(value, list)
    return tuple(Epoch.from_value(item) for item in value)
