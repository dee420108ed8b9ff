"""Observers and light clients trust finality, not a certificate (issue 10).

With t = 1 a Byzantine follower holds the primary's PREPARE vote and its own: a full commit
certificate for a block it never sent its COMMIT for, so the group never finalized it. It
can serve that block by block sync or in a FINAL. Every receiver must refuse it: only a
finality proof (chain.certificate.verify_finality) makes a certified block final.
"""

from __future__ import annotations

import rlp

from chain.types import Block, CommitCertificate, decode
from consensus.actions import Rejected
from consensus.messages import Final
from consensus.simulation import CHAIN_ID, FakeLedger, FinalityOracle, Simulation
from consensus.sync import BlockSync, SyncRequest, SyncResponse, SyncStatus

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
    return ledger, BlockSync(ledger, chain_id=CHAIN_ID, bookkeepers=sim.bookkeepers, t=sim.t)


def _serve(sync: BlockSync, peer: bytes, height: int, blocks: list[Block], now: int) -> list:
    """`peer` announces `height`, is asked, and answers with `blocks`."""
    sends = sync.on_message(peer, SyncStatus(height, blocks[-1].hash), now)
    assert any(isinstance(s.message, SyncRequest) for s in sends)
    return sync.on_message(peer, SyncResponse(blocks[0].number, tuple(rlp.encode(b) for b in blocks)),
                           now)


def test_observer_refuses_a_certified_block_the_group_never_finalized() -> None:
    sim = Simulation(t=1, seed=21)
    withheld = _withheld_block(sim)
    sim.crash(1)  # the Byzantine follower leaves the protocol; view 1 = (0, 2) goes on
    sim.heal()
    for _ in range(8):
        sim.submit(2)
        sim.run_until(sim.now + 400)
    honest = sim.nodes[0].ledger
    assert honest.final_height() >= 4 and honest.blocks[1].hash != withheld.hash

    ledger, sync = _observer(sim)
    _serve(sync, BYZANTINE, 1, [withheld], sim.now)
    assert ledger.final_height() == 0, "the observer took a block the group never finalized"
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
    actions = passive.replica.on_message(1, final, sim.now)
    assert passive.ledger.final_height() == 0, "a bookkeeper took the withheld block in a FINAL"
    assert any(isinstance(a, Rejected) for a in actions)
