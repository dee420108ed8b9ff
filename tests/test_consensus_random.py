"""Seeded random fault schedules on the simulated cluster; each seed reproduces its run.

A schedule mixes message loss, duplication and reordering with crashes, restarts and
one-way partitions, and sometimes one Byzantine replica (then the other faults stay
within t, outside anarchy). Safety is checked on every finalize (FinalityOracle) and at
the end; liveness once every fault heals and every crashed replica restarts; and fault
detection never names an honest replica.
Reproduce one: `pytest tests/test_consensus_random.py -k "seed-123"`.
"""

from __future__ import annotations

import random

import pytest

from consensus import BYZANTINE_MODES, ConsensusConfig
from consensus.simulation import NetworkFaults, Simulation

SEEDS = 300
STEPS = 10
STEP_MS = 400


def run_schedule(seed: int) -> Simulation:
    rng = random.Random(seed)
    t = 1 if rng.random() < 0.7 else 2
    n = 2 * t + 1
    byzantine = {rng.randrange(n): rng.choice(BYZANTINE_MODES)} if rng.random() < 0.25 \
        else {}
    faults = NetworkFaults(drop=rng.choice([0.0, 0.05, 0.15]),
                           duplicate=rng.choice([0.0, 0.1]),
                           delay_ms=(1, rng.choice([5, 30, 90])))
    # Short timeouts, so that faults within a 400 ms step do force view changes.
    config = ConsensusConfig(t=t, commit_timeout_ms=500, view_change_timeout_ms=600,
                             retransmit_ms=150)
    sim = Simulation(t=t, seed=seed, config=config, byzantine=byzantine, faults=faults)
    # With a Byzantine replica, crashed + partitioned stay below t (outside anarchy).
    fault_budget = t - 1 if byzantine else n
    crashed: set[int] = set()
    for _ in range(STEPS):
        event = rng.random()
        honest = [i for i in range(n) if i not in byzantine]
        if event < 0.35 and len(crashed) < fault_budget:
            # Mostly hit the active group: that is what forces view changes.
            active = sim.nodes[honest[0]].replica.status.group
            pool = [i for i in honest if i not in crashed and (i in active or
                                                               rng.random() < 0.3)]
            victim = rng.choice(pool or [i for i in honest if i not in crashed] or honest)
            sim.crash(victim)
            crashed.add(victim)
        elif event < 0.55 and crashed:
            revived = rng.choice(sorted(crashed))
            sim.restart(revived)
            crashed.discard(revived)
        elif event < 0.75 and fault_budget > len(crashed):
            sim.cut(rng.choice(honest), rng.choice(honest))
        elif event < 0.85:
            sim.heal()
        sim.submit(rng.randint(0, 8))
        sim.run_until(sim.now + STEP_MS)
    for index in sorted(crashed):
        sim.restart(index)
    sim.heal()
    sim.submit(1)
    sim.run_until(sim.now + 25_000)
    return sim


@pytest.mark.parametrize("seed", range(SEEDS), ids=lambda seed: f"seed-{seed}")
def test_random_fault_schedule_is_safe_and_live(seed):
    sim = run_schedule(seed)  # FinalityOracle asserts safety on every finalize
    sim.check_consistency()
    honest = [node.index for node in sim.nodes if node.config.byzantine is None]
    assert sim.all_done(honest), (
        f"seed {seed}: no progress after healing; final heights {sim.final_heights()}, "
        f"views {[node.replica.view for node in sim.nodes]}")
    # Fault detection (XFT §4.4) never names a correct replica: crashes, restarts, loss and
    # partitions are no faults it may prove.
    accused = {f.notice.accused for index in honest for f in sim.nodes[index].faults}
    assert accused <= {node.index for node in sim.nodes if node.config.byzantine}, (seed, accused)
