"""The paper's sealed diagnosis message C || ID_v || ID_k || T || sigma (Section V, steps 1-5).

`seal` is the sender side: C is the plaintext under the recipient's Paillier key (hybrid
encoding, crypto/paillier.py), and sigma = x * H(C || ID_v || ID_k || T) is the sender's
BLS signature (eq. 1). In the paper's first message ID_v names the receiver (the vendor)
and ID_k the sender (the failure device); we keep that order for every direction:
receiver id, then sender id. The ids and T are fixed-width and follow the variable-length
C, so the concatenation is unambiguous.

`Opener` is the receiver side (steps 3 and 5). It checks, in this order, and refuses with
a counted `RejectReason`: the sender is a registered member with a BLS key (through the
caller's `MemberDirectory`), the receiver id is its own, T is within the freshness window,
the message was not seen before, the signature verifies (eq. 2); then it decrypts (eq. 7).
`authenticate` and `decrypt` are the two halves, for a receiver that answers the sender
once the first is done (diagnosis/agents.py).

A SealedMessage is an rlp record; its hash, keccak256 of the encoding, goes on chain.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import rlp
from rlp.sedes import Binary, big_endian_int, binary

from crypto import BadCiphertext, BadKey, BadSignature, Hash32, bls, keccak256
from crypto.paillier import (
    PaillierPrivateKey,
    PaillierPublicKey,
    hybrid_decrypt,
    hybrid_encrypt,
)
from diagnosis.errors import (
    MalformedMessage,
    MessageRejected,
    PlaintextTooLarge,
    RejectReason,
)

MemberId = bytes  # a 20-byte account address
MEMBER_ID_BYTES = 20
TIMESTAMP_BYTES = 8
TIMESTAMP_MS_MAX = 2 ** (8 * TIMESTAMP_BYTES) - 1

PLAINTEXT_BYTES_MAX = 1 << 20
# Room for the encapsulated key (up to 2 x 8192-bit), nonce, GCM tag and rlp headers.
SEALED_MESSAGE_BYTES_MAX = PLAINTEXT_BYTES_MAX + 4096
FRESHNESS_WINDOW_MS_DEFAULT = 60_000
REPLAY_CACHE_ENTRIES_MAX_DEFAULT = 65_536

_member_id = Binary.fixed_length(MEMBER_ID_BYTES)


def signing_payload(ciphertext: bytes, receiver_id: MemberId, sender_id: MemberId,
                    timestamp_ms: int) -> bytes:
    """C || ID_v || ID_k || T, the input of H in eq. (1)."""
    return ciphertext + _header(receiver_id, sender_id, timestamp_ms)


def _header(receiver_id: MemberId, sender_id: MemberId, timestamp_ms: int) -> bytes:
    return receiver_id + sender_id + timestamp_ms.to_bytes(TIMESTAMP_BYTES, "big")


class SealedMessage(rlp.Serializable):
    fields = [
        ("ciphertext", binary),
        ("receiver_id", _member_id),
        ("sender_id", _member_id),
        ("timestamp_ms", big_endian_int),
        ("signature", Binary.fixed_length(bls.SIGNATURE_BYTES)),
    ]

    def signing_payload(self) -> bytes:
        return signing_payload(self.ciphertext, self.receiver_id, self.sender_id,
                               self.timestamp_ms)

    def encode(self) -> bytes:
        encoded: bytes = rlp.encode(self)
        return encoded

    @classmethod
    def decode(cls, data: bytes) -> SealedMessage:
        if len(data) > SEALED_MESSAGE_BYTES_MAX:
            raise MalformedMessage(f"{len(data)} bytes exceeds {SEALED_MESSAGE_BYTES_MAX}")
        try:
            message: SealedMessage = rlp.decode(data, cls)
        except (rlp.exceptions.RLPException, TypeError, ValueError) as exc:
            raise MalformedMessage(f"not a sealed message: {exc}") from exc
        if message.timestamp_ms > TIMESTAMP_MS_MAX:
            raise MalformedMessage("timestamp does not fit in 64 bits")
        return message

    @cached_property
    def hash(self) -> Hash32:
        return keccak256(self.encode())


def seal(plaintext: bytes, *, recipient_paillier_public: PaillierPublicKey,
         sender_id: MemberId, receiver_id: MemberId, sender_bls_key: bls.BlsPrivateKey,
         timestamp_ms: int) -> SealedMessage:
    """Steps 1-2 (and 4): encrypt for the receiver, sign, return the message to send."""
    assert len(sender_id) == MEMBER_ID_BYTES and len(receiver_id) == MEMBER_ID_BYTES
    assert 0 <= timestamp_ms <= TIMESTAMP_MS_MAX
    if len(plaintext) > PLAINTEXT_BYTES_MAX:
        raise PlaintextTooLarge(len(plaintext), PLAINTEXT_BYTES_MAX)
    # The header is also GCM associated data: a ciphertext lifted into a message with
    # another sender, receiver or T does not decrypt, whoever signs that message.
    ciphertext = hybrid_encrypt(recipient_paillier_public, plaintext,
                                _header(receiver_id, sender_id, timestamp_ms))
    signature = bls.sign(sender_bls_key,
                         signing_payload(ciphertext, receiver_id, sender_id, timestamp_ms))
    return SealedMessage(ciphertext, receiver_id, sender_id, timestamp_ms, signature)


class MemberDirectory(Protocol):
    """Registered members' BLS public keys (backed by chain state or state proofs)."""

    def bls_key(self, member_id: MemberId) -> bytes | None: ...


@dataclass(frozen=True)
class OpenedMessage:
    sender_id: MemberId
    receiver_id: MemberId
    timestamp_ms: int
    plaintext: bytes
    message_hash: Hash32


class ReplayCache:
    """Hashes of accepted messages still inside the freshness window, at most `entries_max`.

    An entry whose timestamp left the window is dropped: the freshness check refuses that
    message anyway. When full of live entries the cache refuses new ones rather than
    forgetting one that could then be replayed."""

    def __init__(self, entries_max: int) -> None:
        self.entries_max = entries_max
        self._seen: set[Hash32] = set()
        self._by_time: list[tuple[int, Hash32]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, message_hash: Hash32) -> bool:
        return message_hash in self._seen

    def evict_older_than(self, oldest_ms: int) -> None:
        while self._by_time and self._by_time[0][0] < oldest_ms:
            _, message_hash = heapq.heappop(self._by_time)
            self._seen.discard(message_hash)

    def is_full(self) -> bool:
        return len(self._seen) >= self.entries_max

    def add(self, message_hash: Hash32, timestamp_ms: int) -> None:
        assert not self.is_full() and message_hash not in self._seen
        self._seen.add(message_hash)
        heapq.heappush(self._by_time, (timestamp_ms, message_hash))


class Opener:
    """The receiver of sealed messages: checks, counts refusals by reason, decrypts."""

    def __init__(self, *, own_id: MemberId, paillier_private: PaillierPrivateKey,
                 directory: MemberDirectory,
                 freshness_window_ms: int = FRESHNESS_WINDOW_MS_DEFAULT,
                 replay_cache_entries_max: int = REPLAY_CACHE_ENTRIES_MAX_DEFAULT,
                 bls_backend: bls.BlsBackend | None = None) -> None:
        assert len(own_id) == MEMBER_ID_BYTES and freshness_window_ms >= 0
        self.own_id = own_id
        self._paillier = paillier_private
        self._directory = directory
        self.freshness_window_ms = freshness_window_ms
        self._replay = ReplayCache(replay_cache_entries_max)
        self._bls_backend = bls_backend
        # The latest time seen: a clock stepping back must not re-admit evicted messages.
        self._clock_ms = 0
        self.rejections: Counter[RejectReason] = Counter()
        self.opened = 0

    @property
    def replay_cache_entries(self) -> int:
        return len(self._replay)

    def open_bytes(self, data: bytes, *, now_ms: int) -> OpenedMessage:
        try:
            message = SealedMessage.decode(data)
        except MalformedMessage as exc:
            raise self._reject(RejectReason.MALFORMED, str(exc)) from exc
        return self.open(message, now_ms=now_ms)

    def open(self, message: SealedMessage, *, now_ms: int) -> OpenedMessage:
        """Run the checks of Section V step 3 in order; MessageRejected names the first
        that fails."""
        self.authenticate(message, now_ms=now_ms)
        return self.decrypt(message)

    def authenticate(self, message: SealedMessage, *, now_ms: int, count: bool = True) -> None:
        """Everything but the decryption, no I/O (the directory answers from what it
        proved before): a sender with a BLS key, the receiver id, T within the window, not
        seen before, then sigma (eq. 2), the one costly check. `now_ms` is
        when the message arrived: a receiver that decides later judges T at arrival.
        `count=False` leaves a rejection uncounted (a caller about to retry with a fresher
        key); an accepted message enters the replay cache either way."""
        self._clock_ms = max(self._clock_ms, now_ms)
        public_key = self._directory.bls_key(message.sender_id)
        if public_key is None:
            raise self._reject(RejectReason.UNKNOWN_SENDER, message.sender_id.hex(), count)
        if message.receiver_id != self.own_id:
            raise self._reject(RejectReason.WRONG_RECEIVER, message.receiver_id.hex(), count)
        self._check_fresh(message.timestamp_ms, count)
        self._check_unseen(message.hash, count)
        try:
            bls.verify(public_key, message.signing_payload(), message.signature,
                       backend=self._bls_backend)
        except BadKey as exc:
            raise self._reject(RejectReason.SENDER_KEY_INVALID, str(exc), count) from exc
        except BadSignature as exc:
            raise self._reject(RejectReason.BAD_SIGNATURE, str(exc), count) from exc
        self._replay.add(message.hash, message.timestamp_ms)

    def decrypt(self, message: SealedMessage) -> OpenedMessage:
        """eq. (7), for a message `authenticate` let through."""
        try:
            plaintext = hybrid_decrypt(
                self._paillier, message.ciphertext,
                _header(message.receiver_id, message.sender_id, message.timestamp_ms))
        except BadCiphertext as exc:
            raise self._reject(RejectReason.UNDECRYPTABLE, str(exc)) from exc
        self.opened += 1
        return OpenedMessage(message.sender_id, message.receiver_id, message.timestamp_ms,
                             plaintext, message.hash)

    def _check_fresh(self, timestamp_ms: int, count: bool) -> None:
        # |now - T| within the window: T guards against replay (step 2), and a far-future T
        # would outlive its replay-cache entry.
        if abs(self._clock_ms - timestamp_ms) > self.freshness_window_ms:
            raise self._reject(RejectReason.STALE,
                               f"T={timestamp_ms} now={self._clock_ms} "
                               f"window={self.freshness_window_ms} ms", count)

    def _check_unseen(self, message_hash: Hash32, count: bool) -> None:
        self._replay.evict_older_than(self._clock_ms - self.freshness_window_ms)
        if message_hash in self._replay:
            raise self._reject(RejectReason.REPLAY, message_hash.hex(), count)
        if self._replay.is_full():
            raise self._reject(RejectReason.REPLAY_CACHE_FULL,
                               f"{self._replay.entries_max} live entries", count)

    def count(self, rejection: MessageRejected) -> None:
        """Count a rejection `authenticate(count=False)` raised, once the caller keeps it
        (or one of the caller's own, such as a full inbox)."""
        self.rejections[rejection.reason] += 1

    def _reject(self, reason: RejectReason, detail: str, count: bool = True) -> MessageRejected:
        if count:
            self.rejections[reason] += 1
        return MessageRejected(reason, detail)
