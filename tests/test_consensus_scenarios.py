"""Named XPaxos fault scenarios on the simulated cluster (consensus/simulation.py).

Each run checks the safety invariants on every finalize (FinalityOracle: one block per
height, valid certificate) and at the end (equal blocks and state roots everywhere).
"""

from __future__ import annotations

import pytest
import rlp

from chain.certificate import commit_message
from consensus import ConsensusConfig, Suspected
from consensus.messages import Prepare
from consensus.simulation import CHAIN_ID, NetworkFaults, Simulation


def _drive(sim: Simulation, rounds: int = 8, batch: int = 5, step_ms: int = 400) -> None:
    for _ in range(rounds):
        sim.submit(batch)
        sim.run_until(sim.now + step_ms)


def _settle(sim: Simulation, ms: int = 15_000) -> None:
    sim.heal()
    sim.run_until(sim.now + ms)
    sim.check_consistency()


def _reasons(sim: Simulation, index: int) -> list[str]:
    return [s.reason for s in sim.nodes[index].suspicions]


@pytest.mark.parametrize("t", [1, 2])
def test_common_case_finalizes_everything_everywhere_without_view_change(t):
    sim = Simulation(t=t, seed=1)
    _drive(sim)
    _settle(sim, 3_000)
    assert sim.all_done()
    assert min(sim.final_heights()) >= 8
    assert all(node.replica.status.view_changes == 0 for node in sim.nodes)


def test_follower_crash_moves_to_a_group_without_it():
    sim = Simulation(t=1, seed=2)
    _drive(sim, rounds=2)
    sim.crash(1)
    _drive(sim)
    _settle(sim)
    assert sim.all_done([0, 2])
    assert 1 not in sim.nodes[0].replica.status.group


def test_primary_crash_takes_one_view_change():
    # A view's primary is never in the next view's group (chain.certificate, "Group order"
    # in docs/consensus.md): t = 1 view 1 = (1, 2), t = 2 view 1 = (1, 2, 3).
    for t in (1, 2):
        sim = Simulation(t=t, seed=3)
        _drive(sim, rounds=2)
        sim.crash(0)
        _drive(sim)
        _settle(sim)
        alive = list(range(1, 2 * t + 1))
        assert sim.all_done(alive)
        assert all(sim.nodes[i].replica.view == 1 for i in alive), [sim.nodes[i].replica.view for i in alive]
        assert "view change timed out" not in _reasons(sim, 1)


def test_follower_crash_with_t1_takes_two_view_changes():
    sim = Simulation(t=1, seed=3)
    _drive(sim, rounds=2)
    sim.crash(1)
    _drive(sim)
    _settle(sim)
    assert sim.all_done([0, 2])
    # view 1 = (1, 2) holds the crashed follower (a t = 1 order cannot keep both members of
    # one group out of the next): it times out, view 2 = (2, 0) works
    assert sim.nodes[0].replica.view == 2 and sim.nodes[2].replica.view == 2
    assert "view change timed out" in _reasons(sim, 2)


def test_passive_replica_crash_needs_no_view_change_and_it_catches_up():
    sim = Simulation(t=1, seed=4)
    _drive(sim, rounds=2)
    sim.crash(2)
    _drive(sim)
    sim.restart(2)
    _settle(sim, 5_000)
    assert sim.all_done()
    assert all(node.replica.view == 0 for node in sim.nodes)


def test_primary_cut_off_from_its_follower_recovers_in_a_new_view():
    sim = Simulation(t=1, seed=5)
    _drive(sim, rounds=2)
    sim.cut(0, 1)
    sim.cut(1, 0)
    _drive(sim)
    _settle(sim)
    assert sim.all_done()
    assert sim.nodes[2].replica.view >= 1


def test_equivocating_primary_t2_is_suspected_and_never_forks():
    sim = Simulation(t=2, seed=6, byzantine={0: "equivocate"})
    _drive(sim)
    _settle(sim)
    honest_reasons = [r for i in (1, 2) for r in _reasons(sim, i)]
    assert any("another block" in reason for reason in honest_reasons)
    assert sim.all_done()


@pytest.mark.parametrize("mode", ["bad-signature", "wrong-roots", "silent"])
def test_byzantine_primary_is_suspected_and_progress_resumes(mode):
    sim = Simulation(t=1, seed=7, byzantine={0: mode})
    _drive(sim)
    _settle(sim)
    assert sim.all_done([1, 2])
    assert _reasons(sim, 1), "the follower must suspect the faulty primary"
    assert sim.nodes[1].replica.status.group == (1, 2)


def test_wrong_roots_follower_does_not_hurt_an_honest_primary():
    sim = Simulation(t=2, seed=8, byzantine={1: "wrong-roots"})
    _drive(sim)
    _settle(sim, 3_000)
    assert sim.all_done()
    assert all(node.replica.status.view_changes == 0 for node in sim.nodes)


def _follower_and_prepare(sim: Simulation, height: int) -> Prepare:
    primary = sim.nodes[0]
    block = primary.ledger.propose(primary.ledger.final_height() + 1, 0, 0, sim.clock_ms(0))
    assert block is not None
    block = block.copy(header=block.header.copy(number=height))
    vote = primary.key.sign(commit_message(CHAIN_ID, 0, height, block.hash))
    message = Prepare(sender=0, view=0, height=height, block=rlp.encode(block), vote=vote)
    signed = message.signed(primary.key)
    assert isinstance(signed, Prepare)
    return signed


def test_skipped_sequence_number_triggers_suspect():
    sim = Simulation(t=1, seed=9)
    sim.nodes[0].ledger.mempool[b"tx"] = None
    follower = sim.nodes[1].replica
    actions = follower.on_message(0, _follower_and_prepare(sim, 3), sim.now, sim.clock_ms(1))
    suspected = [a for a in actions if isinstance(a, Suspected)]
    assert suspected and "skips" in suspected[0].reason
    assert follower.view == 1


def test_bad_signature_of_the_primary_triggers_suspect():
    sim = Simulation(t=1, seed=10)
    sim.nodes[0].ledger.mempool[b"tx"] = None
    prepare = _follower_and_prepare(sim, 1)
    forged = Prepare(sender=0, view=0, height=1, block=prepare.block, vote=prepare.vote,
                     signature=bytes(64))
    actions = sim.nodes[1].replica.on_message(0, forged, sim.now, sim.clock_ms(1))
    assert any(isinstance(a, Suspected) and a.reason == "bad signature" for a in actions)
    # the passive replica is not in sg_0: it must not suspect
    assert not any(isinstance(a, Suspected)
                   for a in sim.nodes[2].replica.on_message(0, forged, sim.now, sim.clock_ms(2)))


def test_new_primary_omitting_a_committed_entry_is_suspected():
    # Replica 1 (primary of view 2) omits entries. Block X: 0 proposes, 1 commits, the
    # COMMIT never reaches 0, then 0 crashes; view 1 = (0, 2) times out; in view 2 the
    # selection holds X (1's commit log) and follower 2 must catch the omission.
    sim = Simulation(t=1, seed=11, byzantine={1: "omit-entries"})
    sim.cut(1, 0)
    sim.submit(3)
    sim.run_until(sim.now + 100)
    assert sim.nodes[1].replica._entry is not None  # committed, not final
    sim.crash(0)
    _drive(sim, rounds=15)
    assert "NEW-VIEW does not match the selection" in _reasons(sim, 2)
    sim.restart(0)
    _settle(sim, 20_000)
    assert sim.all_done()


@pytest.mark.parametrize("t", [1, 2])
def test_restart_of_every_replica_from_storage(t):
    sim = Simulation(t=t, seed=12)
    _drive(sim, rounds=3)
    sim.submit(5)
    sim.run_until(sim.now + 3)  # a block in flight
    for index in range(sim.n):
        sim.crash(index)
    heights = sim.final_heights()
    for index in range(sim.n):
        sim.restart(index)
    _drive(sim, rounds=3)
    _settle(sim, 5_000)
    assert sim.all_done()
    assert all(after > before for before, after in zip(heights, sim.final_heights(),
                                                            strict=True))


@pytest.mark.parametrize("t", [1, 2])
def test_no_progress_and_no_fork_with_more_than_t_crashed(t):
    sim = Simulation(t=t, seed=13)
    _drive(sim, rounds=2)
    for index in range(t + 1):
        sim.crash(index)
    stuck = sim.final_heights()
    _drive(sim, rounds=10, step_ms=1_000)
    sim.check_consistency()
    live = range(t + 1, sim.n)
    # nothing beyond what was final (or in flight to a FINAL) when the group lost quorum
    assert max(sim.final_heights()[i] for i in live) <= max(stuck)
    assert sim.submitted > 0 and not sim.all_done()
    for index in range(t + 1):
        sim.restart(index)
    _settle(sim)
    assert sim.all_done()


@pytest.mark.parametrize("t", [1, 2])
def test_lossy_reordering_network_stays_safe_and_live(t):
    sim = Simulation(t=t, seed=14,
                     faults=NetworkFaults(drop=0.15, duplicate=0.15, delay_ms=(1, 80)))
    _drive(sim, rounds=10)
    _settle(sim)
    assert sim.all_done()


def test_empty_blocks_primary_crash_is_suspected_without_pending_transactions():
    config = ConsensusConfig(t=1, empty_blocks=True, empty_block_interval_ms=200)
    sim = Simulation(t=1, seed=11, config=config)
    sim.run_until(3_000)
    before = min(sim.final_heights())
    assert before >= 5, "empty blocks are made on the timer"
    sim.crash(0)
    sim.run_until(sim.now + 15_000)
    heights = [sim.nodes[i].ledger.final_height() for i in (1, 2)]
    assert min(heights) > before + 5, "the survivors moved on after a silent primary"
    assert sim.nodes[1].replica.view >= 1
    sim.check_consistency()
