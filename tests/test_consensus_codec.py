"""Wire codec, signatures and storage of consensus/ (vectors and property tests)."""

from __future__ import annotations

import lmdb
import msgpack
import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import Block, CommitCertificate, DecodeError, Vote
from consensus import InvalidMessage, LmdbStorage, MemoryStorage, SyncConfig, message_from_wire, sync_message_from_wire
from consensus.errors import DecodeReason as D
from consensus.log import Entry
from consensus.messages import Commit, Final, NewView, Prepare, Suspect, VcFinal, ViewChange, check_block
from consensus.simulation import genesis_block
from consensus.storage import INITIAL_STATE, StoredState
from consensus.sync import RESPONSE_BLOCKS_MAX, SyncRequest, SyncResponse, SyncStatus
from crypto import KeyPair

KEY = KeyPair.from_seed(b"\x01" * 32)
OTHER = KeyPair.from_seed(b"\x02" * 32)
BLOCK = rlp.encode(genesis_block())
N = 3  # bookkeepers: senders and voters are 0..2


def _view_change(sender: int = 0) -> ViewChange:
    return ViewChange(sender=sender, view=3, final_height=0, final_hash=b"\x11" * 32,
                      final_certificate=b"", entry_view=0, entry_block=b"",
                      entry_certificate=b"")


SAMPLES = [
    Prepare(sender=0, view=1, height=2, block=BLOCK, vote=b"\x05" * 64),
    Commit(sender=1, view=1, height=2, block_hash=b"\x07" * 32, vote=b"\x05" * 64),
    Suspect(sender=2, view=9),
    _view_change(),
    VcFinal(sender=1, view=3, view_changes=(_view_change(0).signed(KEY),
                                            _view_change(2).signed(KEY))),
    NewView(sender=0, view=3, final_height=4, final_hash=b"\x09" * 32, block=b"", vote=b""),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.TYPE)
def test_wire_round_trip_through_msgpack_keeps_message_and_signature(message):
    signed = message.signed(KEY)
    wire = msgpack.unpackb(msgpack.packb(signed.to_wire(), use_bin_type=True), raw=False)
    decoded = message_from_wire(wire, N)
    assert decoded == signed
    assert decoded.verify_signature(KEY.public_key)
    assert not decoded.verify_signature(OTHER.public_key)


def test_signature_covers_every_field_and_the_sender():
    signed = SAMPLES[0].signed(KEY)
    for changed in ({"height": 3}, {"view": 2}, {"block": rlp.encode(genesis_block().copy(transactions=[]).copy(
        header=genesis_block().header.copy(timestamp_ms=1)))}, {"sender": 1}):
        wire = signed.to_wire() | changed
        assert not message_from_wire(wire, N).verify_signature(KEY.public_key), changed


def _with_view_changes(*senders: int) -> dict:
    wire = SAMPLES[4].signed(KEY).to_wire()
    return wire | {"view_changes": [_view_change(s).signed(KEY).to_wire() for s in senders]}


def _certificate(view: int, votes: list[tuple[int, bytes]]) -> bytes:
    return rlp.encode(CommitCertificate(view, [Vote(r, sig) for r, sig in votes], []))


SIG = b"\x05" * 64
FINAL = Final(sender=0, height=1, block_hash=b"\x01" * 32,
              certificate=_certificate(0, [(0, SIG), (1, SIG)]), block=b"").signed(KEY).to_wire()
HEADER = genesis_block().header


@pytest.mark.parametrize("wire, reason", [
    ([], D.NOT_A_MAP),
    ({"type": "nope"}, D.UNKNOWN_TYPE),
    (SAMPLES[2].signed(KEY).to_wire() | {"extra": 1}, D.BAD_FIELDS),
    (SAMPLES[2].signed(KEY).to_wire() | {"view": -1}, D.OUT_OF_RANGE),
    (SAMPLES[2].signed(KEY).to_wire() | {"view": 2**64 - 1}, D.OUT_OF_RANGE),
    (SAMPLES[2].signed(KEY).to_wire() | {"view": True}, D.BAD_TYPE),
    (SAMPLES[2].signed(KEY).to_wire() | {"sender": 3}, D.UNKNOWN_SENDER),
    (SAMPLES[2].signed(KEY).to_wire() | {"signature": b"short"}, D.BAD_LENGTH),
    (SAMPLES[1].signed(KEY).to_wire() | {"block_hash": "0x00"}, D.BAD_TYPE),
    (SAMPLES[4].signed(KEY).to_wire() | {"view_changes": [SAMPLES[2].signed(KEY).to_wire()]}, D.BAD_TYPE),
    (_with_view_changes(0, 99), D.UNKNOWN_SENDER),
    (_with_view_changes(0, 1, 2, 0), D.BAD_LENGTH),
    (SAMPLES[0].signed(KEY).to_wire() | {"block": b""}, D.BAD_LENGTH),
    (FINAL | {"certificate": _certificate(0, [(0, SIG), (5, SIG)])}, D.UNKNOWN_SENDER),
    (FINAL | {"certificate": _certificate(0, [(0, SIG)] * 200)}, D.BAD_LENGTH),
    (FINAL | {"certificate": _certificate(0, [(0, SIG), (1, b"x")])}, D.BAD_LENGTH),
    (FINAL | {"certificate": _certificate(2**64, [(0, SIG), (1, SIG)])}, D.OUT_OF_RANGE),
    (SAMPLES[3].signed(KEY).to_wire() | {"final_height": 3}, D.INCONSISTENT),
    (SAMPLES[3].signed(KEY).to_wire() | {"entry_block": BLOCK}, D.INCONSISTENT),
    (SAMPLES[5].signed(KEY).to_wire() | {"vote": SIG}, D.INCONSISTENT),
])
def test_malformed_wire_is_rejected_with_a_reason(wire, reason):
    with pytest.raises(InvalidMessage) as info:
        message_from_wire(wire, N)
    assert info.value.reason is reason


@pytest.mark.parametrize("block, reason", [
    (b"\xc0", None),  # no block at all: DecodeError
    (rlp.encode(Block(HEADER.copy(proposer=7), [], [])), D.UNKNOWN_SENDER),
    (rlp.encode(Block(HEADER.copy(number=2**64), [], [])), D.OUT_OF_RANGE),
])
def test_a_block_is_checked_where_it_is_decoded_not_on_arrival(block, reason):
    """Blocks stay bytes until a handler needs one (consensus/admission.py); the replica
    decodes and checks it then (a Suspicion of BAD_BLOCK), and only then."""
    message = message_from_wire(SAMPLES[0].signed(KEY).to_wire() | {"block": block}, N)
    if reason is None:
        with pytest.raises(DecodeError):
            message.decoded_block("block")
        return
    with pytest.raises(InvalidMessage) as info:
        check_block(message.decoded_block("block"), N)
    assert info.value.reason is reason


@pytest.mark.parametrize("wire, reason", [
    ({"type": "sync_status", "height": 2**63, "block_hash": b"\x01" * 32}, D.OUT_OF_RANGE),
    ({"type": "sync_response", "from_height": 1, "blocks": [BLOCK]}, D.BAD_RECORD),  # no certificate
    ({"type": "sync_response", "from_height": 1, "blocks": [b"\x01\x02"]}, D.BAD_RECORD),
    ({"type": "sync_response", "from_height": 1, "blocks": [BLOCK] * 300}, D.BAD_LENGTH),
    ({"type": "sync_response", "from_height": 1, "blocks": "x"}, D.BAD_TYPE),
])
def test_malformed_sync_wire_is_rejected_with_a_reason(wire, reason):
    with pytest.raises(InvalidMessage) as info:
        sync_message_from_wire(wire, N)
    assert info.value.reason is reason


def test_decoded_block_is_kept_for_the_handlers():
    wire = msgpack.unpackb(msgpack.packb(SAMPLES[0].signed(KEY).to_wire(), use_bin_type=True), raw=False)
    message = message_from_wire(wire, N)
    assert message.decoded_block("block") is message.decoded_block("block")
    assert message.decoded_block("block") == genesis_block()


wire_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.binary(max_size=80) |
    st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "sender", "signature", "view", "height", "block",
                         "vote", "view_changes", "blocks", "from_height", "count"]) |
        st.text(max_size=5), inner, max_size=8),
    max_leaves=20)
message_types = st.sampled_from(["prepare", "commit", "committed", "final", "suspect",
                                 "view_change", "vc_final", "new_view", "sync_status",
                                 "sync_request", "sync_response"])


@settings(max_examples=400, deadline=None)
@given(wire_values, message_types, st.dictionaries(st.text(max_size=12), wire_values,
                                                    max_size=8))
def test_garbage_raises_only_invalid_message(garbage, kind, fields):
    for candidate in (garbage, {"type": kind, **fields}):
        for decode in (message_from_wire, sync_message_from_wire):
            try:
                decode(candidate, N)
            except InvalidMessage:
                pass


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(SAMPLES), st.sampled_from(["sender", "view", "height", "vote",
                                                  "block", "signature", "final_hash"]),
       wire_values)
def test_one_corrupted_field_raises_only_invalid_message(message, name, value):
    wire = message.signed(KEY).to_wire()
    if name in wire:
        wire[name] = value
        try:
            message_from_wire(wire, N)
        except InvalidMessage:
            pass


def test_sync_messages_round_trip():
    certified = rlp.encode(genesis_block().with_certificate(
        CommitCertificate(0, [Vote(0, b"\x05" * 64), Vote(1, b"\x05" * 64)], [])))
    for message in (SyncStatus(3, b"\x01" * 32), SyncRequest(4, 10),
                    SyncResponse(4, (certified, certified))):
        wire = msgpack.unpackb(msgpack.packb(message.to_wire(), use_bin_type=True), raw=False)
        assert sync_message_from_wire(wire, N) == message


def _state() -> StoredState:
    entry = Entry.create(4, BLOCK, b"\x05" * 64, b"cert")
    return StoredState(view=4, normal=False, entry=entry)


def test_memory_storage_round_trips_view_and_entry():
    storage = MemoryStorage()
    assert storage.load() == INITIAL_STATE
    storage.save(_state())
    loaded = storage.load()
    assert loaded == _state()
    assert loaded.entry is not None and loaded.entry.block_hash == genesis_block().hash


def test_lmdb_storage_survives_reopening(tmp_path):
    env = lmdb.open(str(tmp_path), max_dbs=8)
    LmdbStorage(env).save(_state())
    env.close()
    reopened = lmdb.open(str(tmp_path), max_dbs=8)
    assert LmdbStorage(reopened).load() == _state()
    reopened.close()


def test_a_node_never_answers_with_more_blocks_than_its_peers_decode():
    with pytest.raises(ValueError, match="blocks_per_response_max"):
        SyncConfig(blocks_per_response_max=RESPONSE_BLOCKS_MAX + 1)
    assert SyncConfig(blocks_per_response_max=RESPONSE_BLOCKS_MAX).blocks_per_response_max == RESPONSE_BLOCKS_MAX


def test_every_byzantine_mode_has_its_replica_outside_the_core() -> None:
    from consensus.byzantine import MODES, replica_class
    from consensus.config import BYZANTINE_MODES, FORKING_MODES
    from consensus.replica import Replica

    assert sorted(MODES) == sorted(BYZANTINE_MODES + FORKING_MODES)
    assert replica_class(None) is Replica
    assert all(issubclass(cls, Replica) and cls is not Replica for cls in MODES.values())
