"""Which failed views double the timeouts (docs/consensus.md "Failed views and the doubling").

A view whose group holds a crashed member fails on that member, not on the timeouts: the
replicas move through such views at the configured floors. A view in which every member
answered the view change and it still did not finish says the timeouts are too short for
this network: those views double them, so a slow network still gets a view that lasts.
"""

from __future__ import annotations

from typing import Any

from consensus import ConsensusConfig
from consensus.simulation import NetworkFaults, Simulation

STEP_MS = 20
CONFIG_T1 = ConsensusConfig(t=1)  # the simulation's default for t = 1


def _first_final_of_view(sim: Simulation, nodes: list[int], view: int, end_ms: int) -> int | None:
    """Virtual time at which every node in `nodes` holds a final block certified in `view`
    or later; None if that does not happen before `end_ms`."""
    while sim.now < end_ms:
        sim.run_until(sim.now + STEP_MS)
        if all(any(block.certificate and block.certificate[0].view >= view
                   for block in sim.nodes[i].ledger.blocks[1:]) for i in nodes):
            return sim.now
    return None


def test_views_holding_crashed_members_keep_the_floor_timeouts() -> None:
    """t = 2, bookkeepers 2 and 3 crash in view 0: the groups of views 1-3 ((1,2,3), (2,3,4),
    (3,0,4)) each hold one of them and view 4 = (4,0,1) is the first whole group. Recovery
    is detection + three view-change timeouts at the floor + the working view change; with
    every failed view doubling (as before) the three would wait 1 + 2 + 4 floors."""
    config = ConsensusConfig(t=2)
    sim = Simulation(t=2, seed=11, config=config)
    sim.submit(5)
    sim.run_until(1_000)
    assert sim.all_done() and all(node.replica.view == 0 for node in sim.nodes)
    # every timeout in force is its floor plus twice the replica's measured block cycle,
    # which stays as it is until the next final block
    allowance = 2 * max(node.replica._cycle_ms for node in sim.nodes)
    crashed_at = sim.now
    sim.crash(2)
    sim.crash(3)
    sim.submit(5)
    alive = [0, 1, 4]
    recovered = _first_final_of_view(sim, alive, 4, crashed_at + 20_000)
    assert recovered is not None, "no final block in view 4"
    floors = config.commit_timeout_ms + 3 * config.view_change_timeout_ms + 2 * config.delta_ms
    # plus the allowance on each of the four timeouts and the rounds of the view change that
    # works (a few 1-10 ms hops); one doubling would add a floor (1 s) and an allowance
    assert recovered - crashed_at <= floors + 4 * allowance + 100, (recovered - crashed_at, allowance)
    assert all(sim.nodes[i].replica.view == 4 for i in alive)
    sim.run_until(sim.now + 3_000)
    assert sim.all_done(alive)
    sim.check_consistency()


def test_a_network_too_slow_for_the_timeouts_still_backs_off() -> None:
    """Every link takes 400-450 ms one way, every replica is alive, and the floors are too
    short for it: the primary suspects before its follower's COMMIT can arrive (commit
    timeout 500 ms), and a view change (VIEW-CHANGE, VC-FINAL, VC-CONFIRM: three hops before
    NEW-VIEW) outlasts the 1 s view-change timeout. Every member answered, so each failed
    view doubles the timeouts, and a view that lasts long enough comes. At the floors it
    would churn for ever."""
    config = ConsensusConfig(t=1, commit_timeout_ms=500, view_change_timeout_ms=1_000)
    sim = Simulation(t=1, seed=12, config=config, faults=NetworkFaults(delay_ms=(400, 450)))
    sim.submit(5)
    sim.run_until(30_000)
    assert sim.all_done(), sim.final_heights()
    views = {node.replica.view for node in sim.nodes}
    assert len(views) == 1 and views != {0}, views  # it did change views, and settled in one
    suspicions = sum(len(node.suspicions) for node in sim.nodes)
    sim.submit(5)
    sim.run_until(sim.now + 10_000)
    assert sim.all_done()
    assert sum(len(node.suspicions) for node in sim.nodes) == suspicions  # the view lasts
    sim.check_consistency()



class HoldingSimulation(Simulation):
    """Messages on the `held` links wait (in order) until `release`: a member that is slow,
    not dead."""

    def __init__(self, **kwargs: Any) -> None:
        self.held: set[tuple[int, int]] = set()
        self.waiting: list[tuple[int, int, tuple[str, dict[str, Any]]]] = []
        super().__init__(**kwargs)

    def _transmit(self, src: int, dst: int, payload: tuple[str, dict[str, Any]]) -> None:
        if (src, dst) in self.held:
            self.waiting.append((src, dst, payload))
            return
        super()._transmit(src, dst, payload)

    def release(self) -> None:
        self.held.clear()
        waiting, self.waiting = self.waiting, []
        for src, dst, payload in waiting:
            super()._transmit(src, dst, payload)


def test_a_member_heard_late_makes_its_view_count_after_all() -> None:
    """t = 1: the primary 0 crashes and everything 2 sends to 1 is held. View 1 = (1, 2)
    fails at 1 without 2's VIEW-CHANGE: taken for a view with a dead member, it leaves the
    timeouts at their floors. When 2's messages of view 1 arrive, late, 2 was slow, not dead:
    the view counts, and 1's timeouts double."""
    sim = HoldingSimulation(t=1, seed=14)
    sim.submit(5)
    sim.run_until(1_000)
    assert sim.all_done()
    height = sim.final_heights()[1]
    sim.held.add((2, 1))
    sim.crash(0)
    sim.submit(5)
    follower = sim.nodes[1].replica
    floor = follower._backed_off(CONFIG_T1.view_change_timeout_ms)
    while follower.view < 2:  # view 0 suspected, view 1 timed out without 2's VIEW-CHANGE
        sim.run_until(sim.now + STEP_MS)
        assert sim.now < 20_000, "replica 1 never left view 1"
    assert any(s.view == 1 and s.reason == "view change timed out" for s in sim.nodes[1].suspicions)
    assert follower._backed_off(CONFIG_T1.view_change_timeout_ms) == floor  # no doubling
    sim.release()
    sim.run_until(sim.now + 15)  # the held messages arrive (1-10 ms), nothing final yet
    assert sim.final_heights()[1] == height  # no final block, which would reset the count
    assert follower._backed_off(CONFIG_T1.view_change_timeout_ms) == 2 * floor
