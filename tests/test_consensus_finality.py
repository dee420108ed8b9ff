"""Observers and light clients trust finality, not a certificate (issue 10).

With t = 1 a Byzantine follower holds the primary's PREPARE vote and its own: a full commit
certificate for a block it never sent its COMMIT for, so the group never finalized it. It
can serve that block by block sync or in a FINAL. Every receiver must refuse it: only a
finality proof (chain.certificate.verify_finality) makes a certified block final.
"""

from __future__ import annotations

import pytest
import rlp

from chain import Block, CommitCertificate, InvalidCertificate, Vote, decode
from chain.certificate import commit_message, final_message, synchronous_group, verify_finality
from chain.epochs import Epoch
from consensus import BadBlock, BlockSync, Finalize, Persist, Rejected, SyncConfig, SyncRejected, ViewChanged
from consensus.errors import RejectReason
from consensus.messages import Final, ViewChange
from consensus.replica import Suspicion
from consensus.simulation import CHAIN_ID, FakeLedger, FinalityOracle, Simulation
from consensus.sync import SyncRequest, SyncResponse, SyncStatus

BYZANTINE = b"\x01"  # block sync peer id of bookkeeper 1, the Byzantine follower


def _withheld_block(sim: Simulation) -> Block:
    """Bookkeeper 1 logs the primary's proposal with both votes (t = 1: the certificate)
    and its COMMIT never reaches the primary: what a follower withholding its COMMIT holds."""
    sim.cut(1, 0)
    sim.submit(3)
    sim.run_until(sim.now + 100)
    entry = sim.nodes[1].replica._entry
    assert entry is not None and entry.certificate, "the follower holds the certificate"
    assert sim.nodes[0].ledger.final_height() == 0, "the primary never finalized it"
    return entry.block.copy(certificate=[decode(entry.certificate, CommitCertificate)])


def _observer(sim: Simulation) -> tuple[FakeLedger, BlockSync]:
    # Its own oracle: the cluster's would stop the test at the first fork; the test
    # compares the observer's chain with the cluster's instead.
    ledger = FakeLedger(FinalityOracle(sim.bookkeepers, sim.t))
    epoch = Epoch(1, tuple(sim.bookkeepers), sim.t)
    return ledger, BlockSync(ledger, chain_id=CHAIN_ID, set_of=lambda height: epoch)


def _serve(sync: BlockSync, peer: bytes, height: int, blocks: list[Block], now: int) -> list:
    """`peer` announces `height`, is asked, and answers with `blocks`."""
    sends = sync.on_message(peer, SyncStatus(height, blocks[-1].hash), now)
    assert any(isinstance(s.message, SyncRequest) for s in sends)
    return sync.on_message(peer, SyncResponse(blocks[0].number, tuple(rlp.encode(b) for b in blocks)),
                           now)


def test_observer_refuses_a_certified_block_the_group_never_finalized() -> None:
    sim = Simulation(t=1, seed=21)
    withheld = _withheld_block(sim)
    sim.crash(1)  # the Byzantine follower leaves the protocol; view 1 = (1, 2) times out, view 2 = (2, 0) goes on
    sim.heal()
    honest = sim.nodes[0].ledger
    for _ in range(20):  # bounded; a few blocks are enough (below the 8 one sync answer carries)
        if honest.final_height() >= 4:
            break
        sim.submit(2)
        sim.run_until(sim.now + 400)
    assert honest.final_height() >= 4 and honest.blocks[1].hash != withheld.hash

    ledger, sync = _observer(sim)
    actions = _serve(sync, BYZANTINE, 1, [withheld], sim.now)
    assert ledger.final_height() == 0, "the observer took a block the group never finalized"
    # the serving peer is reported, and not asked again for a while
    assert [(a.peer, a.height, a.reason) for a in actions if isinstance(a, SyncRejected)] == \
        [(BYZANTINE, 1, BadBlock.NOT_FINAL)]
    assert sync.on_message(BYZANTINE, SyncStatus(9, withheld.hash), sim.now) == []
    penalty = SyncConfig().bad_peer_penalty_ms
    assert sync.on_message(BYZANTINE, SyncStatus(9, withheld.hash), sim.now + penalty) != []
    sync.on_tick(sim.now + penalty + SyncConfig().request_timeout_ms)  # that request times out
    # ... and it still follows the consortium, from an honest peer
    while ledger.final_height() < honest.final_height():
        start = ledger.final_height() + 1
        _serve(sync, b"\x00", honest.final_height(), honest.blocks[start:start + 8], sim.now)
    assert [b.hash for b in ledger.blocks] == [b.hash for b in honest.blocks]


def test_bookkeeper_refuses_the_withheld_block_by_sync_and_in_a_final() -> None:
    sim = Simulation(t=1, seed=22)
    withheld = _withheld_block(sim)
    passive = sim.nodes[2]
    _serve(passive.sync, BYZANTINE, 1, [withheld], sim.now)
    assert passive.ledger.final_height() == 0, "a bookkeeper took the withheld block by sync"
    final = Final(sender=1, height=1, block_hash=withheld.hash,
                  certificate=rlp.encode(withheld.certificate[0]),
                  block=rlp.encode(withheld.copy(certificate=[]))).signed(sim.nodes[1].key)
    actions = sim.settled(2, passive.replica.on_message(1, final, sim.now, sim.clock_ms(2)))
    assert passive.ledger.final_height() == 0, "a bookkeeper took the withheld block in a FINAL"
    assert any(isinstance(a, Rejected) for a in actions)


def _final_block(t: int, seed: int) -> tuple[Simulation, Block]:
    sim = Simulation(t=t, seed=seed)
    sim.submit(3)
    sim.run_until(sim.now + 1_000)
    block = sim.nodes[0].ledger.blocks[1]
    assert len(block.certificate[0].finality) == (1 if t == 1 else t + 1)
    return sim, block


def _with_finality(block: Block, finality: list[Vote]) -> Block:
    return block.copy(certificate=[block.certificate[0].copy(finality=finality)])


def _check(sim: Simulation, block: Block) -> None:
    verify_finality(block.certificate[0], chain_id=CHAIN_ID, height=block.number, block_hash=block.hash,
                    bookkeepers=sim.bookkeepers, t=sim.t)


def _sign_final(sim: Simulation, signer: int, view: int, height: int, block_hash: bytes) -> Vote:
    return Vote(signer, sim.nodes[signer].key.sign(final_message(CHAIN_ID, view, height, block_hash)))


@pytest.mark.parametrize("t", [1, 2])
def test_final_blocks_carry_a_proof_that_verifies(t: int) -> None:
    sim, block = _final_block(t, seed=30 + t)
    _check(sim, block)
    with pytest.raises(InvalidCertificate, match="finality signed by"):
        _check(sim, _with_finality(block, []))


def test_attack_finality_signed_for_another_block_hash() -> None:
    sim, block = _final_block(1, seed=33)
    view = block.certificate[0].view
    forged = _with_finality(block, [_sign_final(sim, 0, view, block.number, b"\x07" * 32)])
    with pytest.raises(InvalidCertificate, match="bad finality signature"):
        _check(sim, forged)


@pytest.mark.parametrize("t", [1, 2])
def test_attack_finality_signed_by_a_non_member_or_a_follower(t: int) -> None:
    sim, block = _final_block(t, seed=34 + t)
    certificate = block.certificate[0]
    group = synchronous_group(certificate.view, sim.n, t)
    outsider = next(i for i in range(sim.n) if i not in group)
    # t = 1: the follower (the one that could withhold its COMMIT) cannot vouch for finality
    signers = [group[1]] if t == 1 else [*group[:-1], outsider]
    forged = _with_finality(block, [_sign_final(sim, s, certificate.view, block.number, block.hash)
                                    for s in signers])
    with pytest.raises(InvalidCertificate, match="finality signed by"):
        _check(sim, forged)
    # the same signatures under the replica numbers the proof needs do not verify either
    relabelled = _with_finality(block, [Vote(needed.replica, bad.signature) for needed, bad in
                                        zip(certificate.finality, forged.certificate[0].finality, strict=True)])
    with pytest.raises(InvalidCertificate, match="bad finality signature"):
        _check(sim, relabelled)


def test_a_view_change_claiming_the_withheld_block_as_final_head_is_refused() -> None:
    """Else the new group would start from it and fetch it from its sender by sync."""
    sim = Simulation(t=1, seed=23)
    withheld = _withheld_block(sim)
    claim = ViewChange(sender=1, view=1, final_height=1, final_hash=withheld.hash,
                       final_certificate=rlp.encode(withheld.certificate[0]), entry_view=0,
                       entry_block=b"", entry_certificate=b"").signed(sim.nodes[1].key)
    assert isinstance(claim, ViewChange)
    with pytest.raises(Suspicion, match="finality"):
        sim.nodes[2].replica._check_view_change(claim, 1)


@pytest.mark.parametrize("t", [1, 2])
def test_a_passive_replica_refuses_a_final_with_a_forged_proof(t: int) -> None:
    sim = Simulation(t=t, seed=40 + t)
    _, block = _final_block(t, seed=40 + t)
    passive = sim.nodes[sim.n - 1]
    certificate = block.certificate[0]
    follower = synchronous_group(certificate.view, sim.n, t)[1]
    forged = certificate.copy(finality=[_sign_final(sim, follower, certificate.view, 1, block.hash)])
    final = Final(sender=follower, height=1, block_hash=block.hash, certificate=rlp.encode(forged),
                  block=rlp.encode(block.copy(certificate=[]))).signed(sim.nodes[follower].key)
    actions = sim.settled(passive.index, passive.replica.on_message(follower, final, sim.now,
                                                                     sim.clock_ms(passive.index)))
    assert passive.ledger.final_height() == 0
    assert any(isinstance(a, Rejected) and a.reason is RejectReason.BAD_CERTIFICATE and "finality" in a.detail
               for a in actions)
    genuine = Final(sender=follower, height=1, block_hash=block.hash, certificate=rlp.encode(certificate),
                    block=rlp.encode(block.copy(certificate=[]))).signed(sim.nodes[follower].key)
    actions = sim.settled(passive.index, passive.replica.on_message(follower, genuine, sim.now,
                                                                     sim.clock_ms(passive.index)))
    assert [a.block.number for a in actions if isinstance(a, Finalize)] == [1], \
        "a genuine proof is accepted from whoever relays it"


def test_withhold_commit_mode_forks_only_its_own_ledger_and_its_sync_is_refused() -> None:
    """The test-only mode the observer-fork fault scenario runs: what it serves is refused."""
    sim = Simulation(t=1, seed=24, byzantine={1: "withhold-commit"})
    for _ in range(10):
        sim.submit(2)
        sim.run_until(sim.now + 400)
    sim.run_until(sim.now + 5_000)
    sim.check_consistency()
    byzantine, honest = sim.nodes[1].ledger, sim.nodes[0].ledger
    assert byzantine.final_height() == 1 and byzantine.blocks[1].hash != honest.blocks[1].hash
    assert sim.all_done([0, 2]) and honest.final_height() >= 4
    ledger, sync = _observer(sim)
    request = sync.on_message(BYZANTINE, SyncStatus(byzantine.final_height(), byzantine.final_hash()), sim.now)
    answer = sim.nodes[1].sync.on_message(b"\x03", request[0].message, sim.now)
    actions = sync.on_message(BYZANTINE, answer[0].message, sim.now)
    assert ledger.final_height() == 0
    assert [a.reason for a in actions if isinstance(a, SyncRejected)] == [BadBlock.NOT_FINAL]


def test_a_final_block_of_a_later_view_is_stored_with_the_record_of_that_view() -> None:
    """A Finalize carries the record its block makes true, for the node to write in the
    block's own transaction: the log empty below the new head and, for a block certified in
    a later view, that view (a crash can no longer leave a replica in the old view on it)."""
    sim = Simulation(t=1, seed=50)
    ledger = sim.nodes[0].ledger
    ledger.mempool[b"tx-later-view"] = None
    block = ledger.propose(1, 1, 1, sim.clock_ms(1))  # view 1 = (1, 2): bookkeeper 0 is passive
    assert block is not None
    votes = [Vote(m, sim.nodes[m].key.sign(commit_message(CHAIN_ID, 1, 1, block.hash))) for m in (1, 2)]
    certificate = CommitCertificate(1, votes, [_sign_final(sim, 1, 1, 1, block.hash)])
    final = Final(sender=1, height=1, block_hash=block.hash, certificate=rlp.encode(certificate),
                  block=rlp.encode(block)).signed(sim.nodes[1].key)
    replica = sim.nodes[0].replica
    assert replica.view == 0
    actions = sim.settled(0, replica.on_message(1, final, sim.now, sim.clock_ms(0)))
    finalize = [a for a in actions if isinstance(a, Finalize)]
    assert [a.block.number for a in finalize] == [1] and list(finalize[0].block.certificate) == [certificate]
    assert (finalize[0].state.view, finalize[0].state.normal, finalize[0].state.entry) == (1, True, None)
    assert not any(isinstance(a, Persist) for a in actions), "the record goes with the block, in no write of its own"
    assert ViewChanged(1) in actions[actions.index(finalize[0]):]
    assert ledger.final_height() == 0, "the replica stores nothing itself: the node carries out the action"
