"""Fault detection (XFT §4.4, consensus/detection.py) on the simulated cluster: a replica
that drops the end of its commit log before a view change (state loss) and a primary that
signs conflicting entries (fork) are named with a proof that every other replica checks;
VC-CONFIRM refuses a member that confirms another set; bad notices get a typed rejection."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from chain.epochs import Epoch
from consensus import ConsensusConfig, InvalidMessage, Rejected, message_from_wire
from consensus.detection import InvalidFault, verify_fault
from consensus.errors import RejectReason
from consensus.messages import FAULT_NOTICE_BYTES_MAX, FaultNotice, VcConfirm
from consensus.simulation import CHAIN_ID, Simulation


def _drive(sim: Simulation, rounds: int = 6, batch: int = 4, step_ms: int = 400) -> None:
    for _ in range(rounds):
        sim.submit(batch)
        sim.run_until(sim.now + step_ms)


def _epoch(sim: Simulation) -> Epoch:
    return Epoch(1, tuple(sim.bookkeepers), sim.t)


def _named(sim: Simulation, index: int) -> set[tuple[int, str]]:
    return set(sim.nodes[index].replica.faults)


def _data_loss_run(config: ConsensusConfig | None = None) -> Simulation:
    """t = 1, view 0 = (0, 1); bookkeeper 1 lies about its log in VIEW-CHANGE; the primary
    crashes, so view 1 = (1, 2) follows, where 2 merges 1's VIEW-CHANGE."""
    sim = Simulation(t=1, seed=11, byzantine={1: "drop-log"}, config=config)
    _drive(sim)
    assert min(sim.final_heights()) >= 4
    sim.crash(0)
    _drive(sim, rounds=10)
    sim.run_until(sim.now + 15_000)
    sim.check_consistency()
    return sim


def test_a_replica_that_drops_part_of_its_commit_log_is_named_with_its_proof() -> None:
    sim = _data_loss_run()
    assert sim.nodes[2].replica.view >= 1
    assert (1, "state-loss") in _named(sim, 2)
    [found] = [f for f in sim.nodes[2].faults if f.notice.accused == 1]
    assert found.found_here and found.notice.kind == "state-loss"
    # The proof stands on its own (whoever forwards it) and a tampered one does not.
    verify_fault(found.notice, chain_id=CHAIN_ID, epoch=_epoch(sim))
    [vc] = found.notice.view_changes
    assert vc.sender == 1 and vc.final_height < found.notice.height
    for bad in (dataclasses.replace(found.notice, accused=2),
                dataclasses.replace(found.notice, height=vc.final_height),
                dataclasses.replace(found.notice, certificate=vc.final_certificate)):
        with pytest.raises(InvalidFault):
            verify_fault(bad, chain_id=CHAIN_ID, epoch=_epoch(sim))
    # Progress went on after the view change, with the liar's VIEW-CHANGE left out.
    assert sim.all_done([1, 2])


def test_without_detection_the_same_run_names_nobody() -> None:
    sim = _data_loss_run(ConsensusConfig(t=1, fault_detection=False))
    assert not _named(sim, 2) and not sim.nodes[2].faults
    assert sim.all_done([1, 2])


def test_a_primary_that_signs_conflicting_entries_is_named_by_every_replica() -> None:
    sim = Simulation(t=2, seed=5, byzantine={0: "equivocate"})
    _drive(sim)
    sim.run_until(sim.now + 20_000)
    sim.check_consistency()
    for index in (1, 2, 3, 4):
        assert (0, "fork") in _named(sim, index), f"bookkeeper {index} did not name 0"
    notice = sim.nodes[4].replica.faults[(0, "fork")]
    verify_fault(notice, chain_id=CHAIN_ID, epoch=_epoch(sim))
    assert notice.hash_a != notice.hash_b and notice.view == 0
    # Forwarded proofs are checked, not trusted: some replicas only learnt it from a FAULT.
    assert any(not f.found_here for node in sim.nodes for f in node.faults)
    with pytest.raises(InvalidFault):
        verify_fault(dataclasses.replace(notice, hash_b=notice.hash_a, vote_b=notice.vote_a),
                     chain_id=CHAIN_ID, epoch=_epoch(sim))


def test_an_honest_run_with_view_changes_names_nobody() -> None:
    sim = Simulation(t=1, seed=3)
    _drive(sim, rounds=2)
    sim.crash(0)
    _drive(sim)
    sim.run_until(sim.now + 15_000)
    sim.restart(0)
    sim.crash(1)
    _drive(sim)
    sim.run_until(sim.now + 15_000)
    sim.check_consistency()
    assert sum(node.replica.status.view_changes for node in sim.nodes) >= 2
    assert not any(node.faults for node in sim.nodes)


def _wire(message: FaultNotice | VcConfirm) -> dict:
    return msgpack.unpackb(msgpack.packb(message.to_wire(), use_bin_type=True), raw=False)


def test_malformed_vc_confirm_and_fault_notices_get_a_typed_rejection() -> None:
    sim = Simulation(t=1, seed=11, byzantine={1: "drop-log"})
    good = VcConfirm(sender=1, view=2, digest=b"\x01" * 32)
    for broken in ({**_wire(good), "digest": b"\x01" * 31}, {**_wire(good), "view": -1},
                   {**_wire(good), "extra": 1}, {**_wire(good), "sender": 3},
                   {**_wire(good), "digest": "x" * 32}):
        with pytest.raises(InvalidMessage):
            message_from_wire(broken, sim.n)
    sim_run = _data_loss_run()
    notice = sim_run.nodes[2].replica.faults[(1, "state-loss")]
    wire = _wire(notice)
    assert message_from_wire(wire, sim.n) == notice
    for broken in ({**wire, "kind": "theft"}, {**wire, "accused": 9}, {**wire, "view_changes": []},
                   {**wire, "vote_a": b"\x00" * 64},
                   {**wire, "view_changes": wire["view_changes"] * 2},
                   {**wire, "certificate": b"\x00" * (FAULT_NOTICE_BYTES_MAX + 1)}):
        with pytest.raises(InvalidMessage):
            message_from_wire(broken, sim.n)


def test_a_forged_notice_is_refused_and_a_confirm_of_another_set_suspected() -> None:
    sim = _data_loss_run()
    notice = sim.nodes[2].replica.faults[(1, "state-loss")]
    # Replica 1 (the liar) forwards a "proof" that accuses the honest 2 instead.
    forged = dataclasses.replace(notice, sender=1, accused=2,
                                 view_changes=(dataclasses.replace(notice.view_changes[0], sender=2),))
    forged = forged.signed(sim.nodes[1].key)
    fresh = Simulation(t=1, seed=12)
    actions = fresh.nodes[0].replica.on_message(1, message_from_wire(_wire(forged), 3), fresh.now,
                                                fresh.clock_ms(0))
    assert [a.reason for a in actions if isinstance(a, Rejected)] == [RejectReason.BAD_FAULT_PROOF]
    assert not fresh.nodes[0].replica.faults
    # A genuine one, forwarded by anyone, is taken (and forwarded on).
    relayed = dataclasses.replace(notice, sender=1).signed(sim.nodes[1].key)
    fresh.nodes[0].replica.on_message(1, message_from_wire(_wire(relayed), 3), fresh.now,
                                      fresh.clock_ms(0))
    assert (1, "state-loss") in fresh.nodes[0].replica.faults


def test_a_member_confirming_another_set_is_refused_and_suspected() -> None:
    sim = Simulation(t=1, seed=13)
    _drive(sim, rounds=3)
    sim.crash(0)  # view 1 = (1, 2)
    sim.submit(3)
    replica = sim.nodes[2].replica
    for _ in range(20_000):
        sim.run_until(sim.now + 1)
        if replica.state == "view-change" and replica.vs.confirm_sent is not None:
            break
    assert replica.vs.confirm_sent is not None and replica.state == "view-change"
    other = VcConfirm(sender=1, view=replica.view, digest=b"\x02" * 32).signed(sim.nodes[1].key)
    actions = replica.on_message(1, message_from_wire(_wire(other), 3), sim.now, sim.clock_ms(2))
    assert [a.reason for a in actions if isinstance(a, Rejected)] == [RejectReason.BAD_VC_CONFIRM]
    assert replica.view == 2, "it suspected the view"
    sim.run_until(sim.now + 20_000)
    sim.check_consistency()


def test_a_replica_that_was_down_learns_the_proof_at_its_next_view_change() -> None:
    sim = _data_loss_run()
    assert (1, "state-loss") not in _named(sim, 0), "bookkeeper 0 was down when the proof went round"
    sim.restart(0)
    _drive(sim, rounds=2)
    sim.crash(1)  # view 1's primary: view 2 = (2, 0) follows, and 2 hears 0's VIEW-CHANGE
    _drive(sim, rounds=6)
    sim.run_until(sim.now + 15_000)
    sim.check_consistency()
    assert sim.nodes[0].replica.view >= 2
    [learnt] = [f for f in sim.nodes[0].faults if f.notice.accused == 1]
    assert not learnt.found_here
