"""The application's turn (consensus/loop.py): the replica asks for a block to be built
(`Propose`) or executed (`Check`) and goes on only from the outcome, an input of its own;
what depends on it (the vote's Persist, the PREPARE, the COMMIT) comes from that input."""

from __future__ import annotations

import pytest

from chain import InvalidBlock
from chain.certificate import commit_message
from consensus import Check, ConsensusConfig, Persist, Propose, Rejected, Replica, Send, Suspected
from consensus.errors import RejectReason
from consensus.loop import settle
from consensus.messages import Commit, Prepare
from consensus.simulation import CHAIN_ID, CLOCK_EPOCH_MS, FakeLedger
from consensus.storage import INITIAL_STATE
from crypto import KeyPair

CONFIG = ConsensusConfig(t=1)
KEYS = [KeyPair.from_seed(bytes([i + 1]) * 32) for i in range(3)]


def _replica(index: int) -> tuple[Replica, FakeLedger]:
    ledger = FakeLedger(None)
    ledger.mempool[b"tx"] = None
    replica = Replica(CONFIG, index=index, key=KEYS[index], bookkeepers=[k.public_key for k in KEYS],
                      chain_id=CHAIN_ID, app=ledger, stored=INITIAL_STATE)
    replica.start(0, CLOCK_EPOCH_MS)
    return replica, ledger


def _prepare(ledger: FakeLedger) -> Prepare:
    block = ledger.propose(1, 0, 0, CLOCK_EPOCH_MS + 1)
    assert block is not None
    vote = KEYS[0].sign(commit_message(CHAIN_ID, 0, 1, block.hash))
    prepare = Prepare(sender=0, view=0, height=1, block=block.encoded(), vote=vote).signed(KEYS[0])
    assert isinstance(prepare, Prepare)
    return prepare


def _kinds(actions: list) -> list[str]:
    return [a.message.TYPE if isinstance(a, Send) else type(a).__name__ for a in actions]


def test_a_follower_votes_only_from_the_outcome_of_its_check() -> None:
    follower, ledger = _replica(1)
    prepare = _prepare(ledger)
    asked = follower.on_message(0, prepare, 10, CLOCK_EPOCH_MS + 10)
    assert _kinds(asked) == ["Check"] and isinstance(asked[0], Check)
    assert asked[0].block.hash == prepare.decoded_block("block").hash
    voted = follower.on_checked(asked[0].block.hash, None, 11, CLOCK_EPOCH_MS + 11)
    assert _kinds(voted) == ["Persist", Commit.TYPE]  # logged before the COMMIT leaves
    persist = voted[0]
    assert isinstance(persist, Persist) and persist.state.entry is not None
    assert persist.state.entry.block_hash == asked[0].block.hash


def test_a_proposal_that_fails_its_check_is_suspected_and_not_voted_for() -> None:
    follower, ledger = _replica(1)
    asked = follower.on_message(0, _prepare(ledger), 10, CLOCK_EPOCH_MS + 10)
    assert isinstance(asked[0], Check)
    failed = follower.on_checked(asked[0].block.hash, InvalidBlock("state_root", b"a", b"b"), 11, CLOCK_EPOCH_MS)
    assert [a.reason for a in failed if isinstance(a, Rejected)] == [RejectReason.INVALID_BLOCK]
    assert any(isinstance(a, Suspected) for a in failed)
    assert not any(isinstance(a, Send) and a.message.TYPE == Commit.TYPE for a in failed)
    assert not any(isinstance(a, Persist) and a.state.entry is not None for a in failed)


def test_the_primary_sends_its_prepare_from_the_block_it_is_handed() -> None:
    primary, ledger = _replica(0)
    primary.on_transactions(0, CLOCK_EPOCH_MS)
    asked = primary.on_tick(CONFIG.batch_timeout_ms, CLOCK_EPOCH_MS + CONFIG.batch_timeout_ms)
    assert _kinds(asked) == ["Propose"]
    propose = asked[0]
    assert isinstance(propose, Propose)
    assert (propose.height, propose.view, propose.proposer) == (1, 0, 0)
    block = ledger.propose(propose.height, propose.view, propose.proposer, propose.clock_ms, propose.budget_ms)
    sent = primary.on_proposal(block, CONFIG.batch_timeout_ms + 5, CLOCK_EPOCH_MS)
    assert _kinds(sent) == ["Persist", Prepare.TYPE]  # its vote is logged before the PREPARE


def test_an_idle_build_sends_nothing_and_proposes_again_later() -> None:
    primary, ledger = _replica(0)
    primary.on_transactions(0, CLOCK_EPOCH_MS)
    asked = primary.on_tick(CONFIG.batch_timeout_ms, CLOCK_EPOCH_MS)
    assert _kinds(asked) == ["Propose"]
    assert primary.on_proposal(None, CONFIG.batch_timeout_ms, CLOCK_EPOCH_MS) == []
    deadline = primary.next_deadline()
    assert deadline is not None and deadline > CONFIG.batch_timeout_ms  # the batch timer again


def test_an_input_before_the_outcome_is_a_bug_of_the_loop() -> None:
    follower, ledger = _replica(1)
    follower.on_message(0, _prepare(ledger), 10, CLOCK_EPOCH_MS + 10)
    with pytest.raises(AssertionError, match="comes before any other input"):
        follower.on_tick(20, CLOCK_EPOCH_MS + 20)


def test_settle_carries_out_the_check_and_keeps_the_replicas_order() -> None:
    follower, ledger = _replica(1)
    actions = settle(follower, ledger, follower.on_message(0, _prepare(ledger), 10, CLOCK_EPOCH_MS + 10),
                     lambda: 11, lambda: CLOCK_EPOCH_MS + 11)
    assert _kinds(actions) == ["Persist", Commit.TYPE]


def test_an_application_that_raises_leaves_the_replica_taking_inputs() -> None:
    """A bug below the replica (not an invalid block): the node's guard logs it, and the
    replica gives that check up as a lost message instead of refusing every later input."""
    follower, ledger = _replica(1)

    def broken(block: object) -> None:
        raise KeyError("a bug in the ledger")

    ledger.check = broken  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        settle(follower, ledger, follower.on_message(0, _prepare(ledger), 10, CLOCK_EPOCH_MS + 10),
               lambda: 11, lambda: CLOCK_EPOCH_MS + 11)
    follower.on_tick(20, CLOCK_EPOCH_MS + 20)  # no assertion: nothing is due any more
