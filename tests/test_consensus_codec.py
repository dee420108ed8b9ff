"""Wire codec, signatures and storage of consensus/ (vectors and property tests)."""

from __future__ import annotations

import lmdb
import msgpack
import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.errors import InvalidMessage
from consensus.log import Entry
from consensus.messages import (
    Commit,
    NewView,
    Prepare,
    Suspect,
    VcFinal,
    ViewChange,
    message_from_wire,
)
from consensus.simulation import genesis_block
from consensus.storage import INITIAL_STATE, LmdbStorage, MemoryStorage, StoredState
from consensus.sync import SyncRequest, SyncResponse, SyncStatus, sync_message_from_wire
from crypto.keys import KeyPair

KEY = KeyPair.from_seed(b"\x01" * 32)
OTHER = KeyPair.from_seed(b"\x02" * 32)
BLOCK = rlp.encode(genesis_block())


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
    decoded = message_from_wire(wire)
    assert decoded == signed
    assert decoded.verify_signature(KEY.public_key)
    assert not decoded.verify_signature(OTHER.public_key)


def test_signature_covers_every_field_and_the_sender():
    signed = SAMPLES[0].signed(KEY)
    for changed in ({"height": 3}, {"view": 2}, {"block": BLOCK + b"x"}, {"sender": 1}):
        wire = signed.to_wire() | changed
        assert not message_from_wire(wire).verify_signature(KEY.public_key), changed


@pytest.mark.parametrize("wire, reason", [
    ([], "not-a-map"),
    ({"type": "nope"}, "unknown-type"),
    (SAMPLES[2].signed(KEY).to_wire() | {"extra": 1}, "bad-fields"),
    (SAMPLES[2].signed(KEY).to_wire() | {"view": -1}, "bad-field"),
    (SAMPLES[2].signed(KEY).to_wire() | {"view": True}, "bad-field"),
    (SAMPLES[2].signed(KEY).to_wire() | {"signature": b"short"}, "bad-field"),
    (SAMPLES[1].signed(KEY).to_wire() | {"block_hash": "0x00"}, "bad-field"),
    (SAMPLES[4].signed(KEY).to_wire() | {"view_changes": [SAMPLES[2].to_wire()]},
     "bad-field"),
])
def test_malformed_wire_is_rejected_with_a_reason(wire, reason):
    with pytest.raises(InvalidMessage) as info:
        message_from_wire(wire)
    assert info.value.reason == reason


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
                decode(candidate)
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
            message_from_wire(wire)
        except InvalidMessage:
            pass


def test_sync_messages_round_trip():
    for message in (SyncStatus(3, b"\x01" * 32), SyncRequest(4, 10),
                    SyncResponse(4, (BLOCK, BLOCK))):
        wire = msgpack.unpackb(msgpack.packb(message.to_wire(), use_bin_type=True), raw=False)
        assert sync_message_from_wire(wire) == message


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
