"""Block time (issue 10): a primary whose clock runs ahead cannot date the chain into the
future, and chain time keeps advancing once honest proposers lead.

Followers refuse a proposal stamped more than `clock_drift_ms_max` ahead of their own
clock (consensus/replica.py); block time is max(parent + 1, proposer's clock) (chain/
execution.py, and FakeLedger here). Clocks are per replica in the simulation
(`clock_offsets`).
"""

from __future__ import annotations

import pytest

from chain import InvalidBlock
from consensus import ConsensusConfig
from consensus.simulation import Simulation
from tests.support import DevChain

TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000
DRIFT_MS = ConsensusConfig(t=1).clock_drift_ms_max


def _drive(sim: Simulation, rounds: int, batch: int = 3, step_ms: int = 400) -> None:
    for _ in range(rounds):
        sim.submit(batch)
        sim.run_until(sim.now + step_ms)


def _times(sim: Simulation, index: int) -> list[int]:
    return [block.header.timestamp_ms for block in sim.nodes[index].ledger.blocks[1:]]


def _honest_clock_now(sim: Simulation, honest: list[int]) -> int:
    return max(sim.clock_ms(i) for i in honest)


def test_a_primary_ten_years_ahead_is_refused_and_rotated_out() -> None:
    sim = Simulation(t=1, seed=51, clock_offsets={0: TEN_YEARS_MS})
    _drive(sim, rounds=20)
    sim.run_until(sim.now + 5_000)
    sim.check_consistency()
    assert sim.all_done([1, 2]) and sim.nodes[1].ledger.final_height() >= 1
    reasons = [s.reason for i in (1, 2) for s in sim.nodes[i].suspicions]
    assert any("ahead of this replica's clock" in reason for reason in reasons)
    assert sim.nodes[1].replica.status.group == (1, 2), "the group without the fast clock"
    times = _times(sim, 1)
    assert max(times) <= _honest_clock_now(sim, [1, 2]), "chain time ran into the future"
    assert times == sorted(set(times)), "block time strictly increases"


def test_a_replica_far_behind_does_not_stop_the_chain() -> None:
    sim = Simulation(t=1, seed=52, clock_offsets={1: -10 * 60 * 1000})
    _drive(sim, rounds=20)
    sim.run_until(sim.now + 5_000)
    sim.check_consistency()
    assert sim.all_done() and min(sim.final_heights()) >= 5
    times = _times(sim, 0)
    assert times == sorted(set(times)) and max(times) <= _honest_clock_now(sim, [0, 2])


def test_attack_primary_stamping_just_under_the_bound_gains_nothing_lasting() -> None:
    """A Byzantine primary dates every block DRIFT_MS - 1 ahead: each is accepted, chain
    time stays within the bound of the honest clocks, and once it is gone the chain follows
    the honest clocks again (no frozen time: max(parent + 1, clock))."""
    sim = Simulation(t=1, seed=53, clock_offsets={0: DRIFT_MS - 1})
    _drive(sim, rounds=10)
    assert all(node.replica.status.view_changes == 0 for node in sim.nodes), "accepted, as it should"
    assert 0 < _times(sim, 1)[-1] - sim.clock_ms(1) < DRIFT_MS, "ahead, but within the bound"
    last_byzantine = _times(sim, 1)[-1]
    sim.crash(0)
    _drive(sim, rounds=25)
    sim.run_until(sim.now + 5_000)
    times = _times(sim, 1)
    assert times == sorted(set(times)) and times[-1] > last_byzantine
    assert sim.nodes[1].replica.status.group == (1, 2)
    # the honest primary's own clock dates the last blocks, not the future parent + 1
    assert times[-1] <= _honest_clock_now(sim, [1, 2]) and \
        times[-1] >= last_byzantine + DRIFT_MS - 1, "chain time froze at the future block"


def test_chain_time_advances_after_a_block_dated_in_the_future(devchain: DevChain) -> None:
    future = devchain.clock_ms + TEN_YEARS_MS
    first, _ = devchain.chain.build([], timestamp_ms=future, proposer=0, view=0)
    devchain.chain.append(first.block)
    second, _ = devchain.chain.build([], timestamp_ms=devchain.clock_ms, proposer=0, view=0)
    assert second.block.header.timestamp_ms == future + 1
    frozen = second.block.copy(header=second.block.header.copy(timestamp_ms=future))
    with pytest.raises(InvalidBlock, match="timestamp not after parent"):
        devchain.chain.execute(frozen)


def test_the_drift_bound_is_at_least_delta() -> None:
    with pytest.raises(ValueError, match="clock_drift_ms_max must be at least delta_ms"):
        ConsensusConfig(t=1, delta_ms=100, clock_drift_ms_max=99)
