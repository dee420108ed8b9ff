"""Sealed diagnosis messages C || ID_v || ID_k || T || sigma and the Opener's checks
(paper Section V steps 1-5): one valid case and one vector per rejection reason."""

from __future__ import annotations

import pytest
import rlp

from crypto import bls, counters, keccak256, paillier
from diagnosis import (
    MalformedMessage,
    MessageRejected,
    Opener,
    PlaintextTooLarge,
    RejectReason,
    SealedMessage,
    seal,
)
from diagnosis.message import PLAINTEXT_BYTES_MAX

DEVICE_ID = b"\x0d" * 20  # k_i, the failure node: sender
VENDOR_ID = b"\x0a" * 20  # v_i: receiver
STRANGER_ID = b"\x5e" * 20
DEVICE_BLS = bls.BlsPrivateKey.from_seed(b"device-k".ljust(32, b"\x00"))
STRANGER_BLS = bls.BlsPrivateKey.from_seed(b"stranger".ljust(32, b"\x00"))
VENDOR_PAILLIER = paillier.PaillierPrivateKey.generate(512)
WINDOW_MS = 30_000
T0 = 1_700_000_000_000
FAULT = b"trouble spot: CT secondary; failure performance: relay 21 trips on load"


class Directory:
    """A MemberDirectory backed by a dict (the node backs it by chain state)."""

    def __init__(self, keys: dict[bytes, bytes]) -> None:
        self.keys = keys

    def bls_key(self, member_id: bytes) -> bytes | None:
        return self.keys.get(member_id)


def _opener(**limits: int) -> Opener:
    directory = Directory({DEVICE_ID: DEVICE_BLS.public_key(),
                           STRANGER_ID: STRANGER_BLS.public_key()})
    return Opener(own_id=VENDOR_ID, paillier_private=VENDOR_PAILLIER, directory=directory,
                  freshness_window_ms=WINDOW_MS, **limits)


def _seal(plaintext: bytes = FAULT, *, timestamp_ms: int = T0, sender_id: bytes = DEVICE_ID,
          receiver_id: bytes = VENDOR_ID, key: bls.BlsPrivateKey = DEVICE_BLS) -> SealedMessage:
    return seal(plaintext, recipient_paillier_public=VENDOR_PAILLIER.public_key,
                sender_id=sender_id, receiver_id=receiver_id, sender_bls_key=key,
                timestamp_ms=timestamp_ms)


def _rejected(opener: Opener, message: SealedMessage, now_ms: int = T0) -> RejectReason:
    with pytest.raises(MessageRejected) as info:
        opener.open(message, now_ms=now_ms)
    assert opener.rejections[info.value.reason] >= 1
    return info.value.reason


def test_valid_message_opens() -> None:
    opener = _opener()
    message = _seal()
    opened = opener.open(message, now_ms=T0 + 1_000)
    assert opened.plaintext == FAULT
    assert (opened.sender_id, opened.receiver_id, opened.timestamp_ms) == (DEVICE_ID, VENDOR_ID, T0)
    assert opened.message_hash == message.hash
    assert opener.opened == 1 and not opener.rejections


def test_signature_covers_the_papers_concatenation() -> None:
    message = _seal()
    payload = message.ciphertext + VENDOR_ID + DEVICE_ID + T0.to_bytes(8, "big")
    assert message.signing_payload() == payload
    bls.verify(DEVICE_BLS.public_key(), payload, message.signature)


def test_encoding_round_trip_and_hash() -> None:
    message = _seal()
    data = message.encode()
    assert SealedMessage.decode(data) == message
    assert message.hash == keccak256(data)
    assert _opener().open_bytes(data, now_ms=T0).plaintext == FAULT


@pytest.mark.parametrize("data", [
    b"",
    b"\x80",
    rlp.encode([b"c", b"\x0a" * 19, b"\x0d" * 20, 5, b"\x00" * 48]),  # short receiver id
    rlp.encode([b"c", b"\x0a" * 20, b"\x0d" * 20, 2 ** 64, b"\x00" * 48]),  # T overflows
], ids=["empty", "empty_string", "short_id", "timestamp_overflow"])
def test_malformed_bytes_are_rejected_and_counted(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        SealedMessage.decode(data)
    opener = _opener()
    with pytest.raises(MessageRejected) as info:
        opener.open_bytes(data, now_ms=T0)
    assert info.value.reason is RejectReason.MALFORMED
    assert opener.rejections == {RejectReason.MALFORMED: 1}


def test_forged_signature() -> None:
    # A registered stranger signs a message that claims to come from the device.
    opener = _opener()
    forged = _seal(key=STRANGER_BLS)
    assert _rejected(opener, forged) is RejectReason.BAD_SIGNATURE
    assert opener.rejections == {RejectReason.BAD_SIGNATURE: 1}


def test_tampered_ciphertext_breaks_the_signature() -> None:
    message = _seal()
    flipped = bytearray(message.ciphertext)
    flipped[-1] ^= 1
    opener = _opener()
    assert _rejected(opener, message.copy(ciphertext=bytes(flipped))) is RejectReason.BAD_SIGNATURE
    assert opener.rejections == {RejectReason.BAD_SIGNATURE: 1}


def test_validly_signed_garbage_ciphertext_is_undecryptable() -> None:
    # The sender itself signs a corrupted C: the signature holds, AES-GCM does not.
    message = _seal()
    flipped = bytearray(message.ciphertext)
    flipped[-1] ^= 1
    ciphertext = bytes(flipped)
    signature = bls.sign(DEVICE_BLS, message.copy(ciphertext=ciphertext).signing_payload())
    opener = _opener()
    tampered = message.copy(ciphertext=ciphertext, signature=signature)
    assert _rejected(opener, tampered) is RejectReason.UNDECRYPTABLE
    assert opener.rejections == {RejectReason.UNDECRYPTABLE: 1}


def test_ciphertext_moved_under_another_header_is_undecryptable() -> None:
    # A registered member re-signs someone's C with its own id: the GCM header binding fails.
    original = _seal()
    stolen = SealedMessage(original.ciphertext, VENDOR_ID, STRANGER_ID, T0, b"\x00" * 48)
    stolen = stolen.copy(signature=bls.sign(STRANGER_BLS, stolen.signing_payload()))
    assert _rejected(_opener(), stolen) is RejectReason.UNDECRYPTABLE


def test_wrong_receiver() -> None:
    opener = _opener()
    assert _rejected(opener, _seal(receiver_id=STRANGER_ID)) is RejectReason.WRONG_RECEIVER
    assert opener.rejections == {RejectReason.WRONG_RECEIVER: 1}


def test_unregistered_sender() -> None:
    intruder = bls.BlsPrivateKey.from_seed(b"intruder".ljust(32, b"\x00"))
    opener = _opener()
    message = _seal(sender_id=b"\x99" * 20, key=intruder)
    assert _rejected(opener, message) is RejectReason.UNKNOWN_SENDER
    assert opener.rejections == {RejectReason.UNKNOWN_SENDER: 1}


def test_registered_key_that_is_not_a_point() -> None:
    opener = Opener(own_id=VENDOR_ID, paillier_private=VENDOR_PAILLIER,
                    directory=Directory({DEVICE_ID: b"\x00" * 96}))
    assert _rejected(opener, _seal()) is RejectReason.SENDER_KEY_INVALID


@pytest.mark.parametrize("offset_ms", [-WINDOW_MS - 1, WINDOW_MS + 1])
def test_stale_or_future_timestamp(offset_ms: int) -> None:
    opener = _opener()
    assert _rejected(opener, _seal(timestamp_ms=T0 + offset_ms)) is RejectReason.STALE
    assert opener.rejections == {RejectReason.STALE: 1}


def test_edges_of_the_window_are_fresh() -> None:
    opener = _opener()
    opener.open(_seal(timestamp_ms=T0 - WINDOW_MS), now_ms=T0)
    opener.open(_seal(timestamp_ms=T0 + WINDOW_MS), now_ms=T0)
    assert opener.opened == 2


def test_replay() -> None:
    opener = _opener()
    message = _seal()
    opener.open(message, now_ms=T0)
    assert _rejected(opener, message, now_ms=T0 + 5) is RejectReason.REPLAY
    assert opener.rejections == {RejectReason.REPLAY: 1}


def test_rejected_message_is_not_remembered() -> None:
    # A forged copy must not poison the cache against the genuine message.
    opener = _opener()
    genuine = _seal()
    _rejected(opener, genuine.copy(signature=bls.sign(STRANGER_BLS, genuine.signing_payload())))
    assert opener.open(genuine, now_ms=T0).plaintext == FAULT


def test_replay_after_the_window_is_stale_and_the_cache_is_pruned() -> None:
    opener = _opener()
    message = _seal()
    opener.open(message, now_ms=T0)
    later = T0 + WINDOW_MS + 1
    opener.open(_seal(timestamp_ms=later), now_ms=later)
    assert opener.replay_cache_entries == 1
    assert _rejected(opener, message, now_ms=later) is RejectReason.STALE


def test_clock_stepping_back_does_not_readmit_an_evicted_message() -> None:
    opener = _opener()
    message = _seal()
    opener.open(message, now_ms=T0)
    opener.open(_seal(timestamp_ms=T0 + WINDOW_MS + 1), now_ms=T0 + WINDOW_MS + 1)
    assert _rejected(opener, message, now_ms=T0) is RejectReason.STALE


def test_full_replay_cache_refuses_rather_than_forgets() -> None:
    opener = _opener(replay_cache_entries_max=1)
    opener.open(_seal(), now_ms=T0)
    other = _seal(b"second fault", timestamp_ms=T0 + 1)
    assert _rejected(opener, other, now_ms=T0 + 1) is RejectReason.REPLAY_CACHE_FULL
    opener.open(other, now_ms=T0 + WINDOW_MS + 1)  # the first entry has expired
    assert opener.opened == 2


def test_checks_run_in_the_papers_order() -> None:
    # Unknown sender, wrong receiver and stale at once: the first check names it.
    opener = _opener()
    message = _seal(sender_id=b"\x99" * 20, receiver_id=STRANGER_ID, timestamp_ms=0)
    assert _rejected(opener, message) is RejectReason.UNKNOWN_SENDER
    message = _seal(receiver_id=STRANGER_ID, timestamp_ms=0)
    assert _rejected(opener, message) is RejectReason.WRONG_RECEIVER


def test_plaintext_size_limit() -> None:
    with pytest.raises(PlaintextTooLarge):
        _seal(b"\x00" * (PLAINTEXT_BYTES_MAX + 1))


def test_table_4_counts_per_role() -> None:
    device, vendor = counters.OpCounter(), counters.OpCounter()
    with counters.attribute_to(device):
        message = _seal()
    with counters.attribute_to(vendor):
        _opener().open(message, now_ms=T0)
    assert device.snapshot().as_dict() == {"T_E": 1, "T_M": 1, "T_P": 0}
    assert vendor.snapshot().as_dict() == {"T_E": 1, "T_M": 0, "T_P": 2}
