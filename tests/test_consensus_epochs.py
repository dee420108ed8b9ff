"""A replica runs one bookkeeper set (docs/consensus.md "Governance"): it signs with its
epoch, ignores other epochs' messages (a straggler's SUSPECT must not move the new set's
views), starts the epoch in view 0 whatever an older epoch stored, and checks the previous
epoch's last block with that epoch's set."""

from __future__ import annotations

import msgpack
import pytest
import rlp

from chain import CommitCertificate, Vote
from chain.certificate import commit_message, final_message
from chain.epochs import Epoch
from consensus import Action, ConsensusConfig, MemoryStorage, Persist, Replica, Send, ViewChanged, message_from_wire
from consensus.messages import Suspect, ViewChange
from consensus.replica import Suspicion
from consensus.simulation import CHAIN_ID, CLOCK_EPOCH_MS, FakeLedger
from consensus.storage import StoredState
from crypto import KeyPair

OLD = [KeyPair.from_seed(bytes([i + 1]) * 32) for i in range(3)]
NEW = [OLD[0], OLD[2], KeyPair.from_seed(b"\x09" * 32)]  # bookkeeper 1 rotated out
START = 5


def replica(storage: MemoryStorage, index: int = 0) -> Replica:
    epochs = (Epoch(1, tuple(k.public_key for k in OLD), 1), Epoch(START, tuple(k.public_key for k in NEW), 1))

    def set_of(height: int) -> Epoch:
        return epochs[1] if height >= START else epochs[0]

    return Replica(ConsensusConfig(t=1), index=index, key=NEW[index], bookkeepers=[k.public_key for k in NEW],
                   chain_id=CHAIN_ID, app=FakeLedger(None), stored=storage.load(), epoch=START, set_of=set_of)


def test_an_older_epochs_state_is_not_resumed_and_messages_carry_the_epoch() -> None:
    storage = MemoryStorage()
    storage.save(StoredState(view=7, normal=False, entry=None, epoch=1))
    r = replica(storage)
    assert r.view == 0 and r.state == "normal"
    actions = r.start(0, CLOCK_EPOCH_MS)
    assert not [a for a in actions if isinstance(a, ViewChanged)]
    r.on_tick(10, CLOCK_EPOCH_MS + 10)
    persisted: list[Action] = []
    r._persist(persisted)
    [persist] = persisted
    assert isinstance(persist, Persist) and persist.state.epoch == START and persist.state.view == 0


def test_messages_of_another_epoch_are_ignored_and_own_ones_are_tagged() -> None:
    r = replica(MemoryStorage(), index=1)
    r.start(0, CLOCK_EPOCH_MS)
    # A straggler of the old set (bookkeeper 1 there = OLD[1]) suspects view 0 of its epoch.
    straggler = Suspect(sender=1, view=0, epoch=1).signed(OLD[1])
    assert r.on_message(1, straggler, 10, CLOCK_EPOCH_MS + 10) == []
    assert r.view == 0
    # The same SUSPECT by the new set's bookkeeper 0, in this epoch, moves it (it is sg_0's).
    current = Suspect(sender=0, view=0, epoch=START).signed(NEW[0])
    actions = r.on_message(0, current, 20, CLOCK_EPOCH_MS + 20)
    assert r.view == 1
    sends = [a.message for a in actions if isinstance(a, Send)]
    assert sends and all(m.epoch == START for m in sends)
    wire = msgpack.unpackb(msgpack.packb(sends[-1].to_wire(), use_bin_type=True), raw=False)
    assert message_from_wire(wire, 3).epoch == START


def test_the_previous_epochs_last_block_is_checked_with_its_own_set() -> None:
    """A VIEW-CHANGE of the new epoch whose final head is block START - 1: certified by the
    old set, accepted; certified by the new set's keys (who did not certify it), refused."""
    r = replica(MemoryStorage(), index=1)
    r.start(0, CLOCK_EPOCH_MS)
    block_hash, height = b"\x05" * 32, START - 1

    def view_change(keys: list[KeyPair]) -> ViewChange:
        votes = [Vote(i, keys[i].sign(commit_message(CHAIN_ID, 0, height, block_hash))) for i in (0, 1)]
        finality = [Vote(0, keys[0].sign(final_message(CHAIN_ID, 0, height, block_hash)))]
        message = ViewChange(sender=0, view=0, epoch=START, final_height=height, final_hash=block_hash,
                             final_certificate=rlp.encode(CommitCertificate(0, votes, finality)), entry_view=0,
                             entry_block=b"", entry_certificate=b"").signed(NEW[0])
        # as it arrives: decoded for a cluster of this epoch's n
        decoded = message_from_wire(msgpack.unpackb(msgpack.packb(message.to_wire(), use_bin_type=True),
                                                    raw=False), len(NEW))
        assert isinstance(decoded, ViewChange)
        return decoded

    r._check_view_change(view_change(OLD), 0)
    with pytest.raises(Suspicion, match="certificate"):
        r._check_view_change(view_change(NEW), 0)


def test_a_view_change_carries_a_final_head_certified_by_a_larger_set() -> None:
    """5 -> 3: the new epoch's VIEW-CHANGE carries block START - 1, certified by three of
    five (t = 2); decoding for n = 3 bounds it by BOOKKEEPERS_MAX, the replica by its set."""
    five = [KeyPair.from_seed(bytes([i + 20]) * 32) for i in range(5)]
    block_hash = b"\x06" * 32
    votes = [Vote(i, five[i].sign(commit_message(CHAIN_ID, 0, START - 1, block_hash))) for i in (0, 1, 2)]
    message = ViewChange(sender=2, view=0, epoch=START, final_height=START - 1, final_hash=block_hash,
                         final_certificate=rlp.encode(CommitCertificate(0, votes, votes)), entry_view=0,
                         entry_block=b"", entry_certificate=b"").signed(five[4])
    wire = msgpack.unpackb(msgpack.packb(message.to_wire(), use_bin_type=True), raw=False)
    decoded = message_from_wire(wire, 3)
    assert isinstance(decoded, ViewChange) and decoded.final_height == START - 1
