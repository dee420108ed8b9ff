"""Paillier encryption (paper eqs. 3-7) with `phe`, and the hybrid encoding of byte messages.

Keys: `phe` generates N = pq with g = N + 1 (eqs. 3-5); 2048-bit N by default. A public key
travels as N, big-endian, in ceil(bits / 8) bytes; a ciphertext as an integer of Z*_{N^2}
in twice that many bytes.

Randomness: every encryption takes a fresh r (eq. 6). The paper reuses one r per party,
which makes E deterministic and shows equal messages as equal ciphertexts; we deviate.
The costly part of eq. 6, r^N mod N^2, does not depend on the message, so each public key
carries an `ObfuscatorPool` of values computed ahead of time; `refill()` runs off the hot
path, and an empty pool falls back to computing r^N inline (never to reuse).

Byte messages (`hybrid_encrypt`): a fresh 256-bit AES key is Paillier-encrypted and the
body is sealed with AES-256-GCM, so any length costs one Paillier encryption and one
decryption, and tampering with the body is detected (docs/crypto.md says why this rather
than chunked Paillier).
"""

from __future__ import annotations

import math
import secrets
import threading
from collections import deque
from dataclasses import dataclass, field

import gmpy2
import phe
import rlp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from phe.util import mulmod, powmod
from rlp.sedes import Binary, big_endian_int, binary

from crypto import counters
from crypto.errors import BadCiphertext, BadKey, PlaintextOutOfRange

MODULUS_BITS_DEFAULT = 2048
# Test suites use 512-bit keys for speed; anything shorter is refused outright.
MODULUS_BITS_MIN = 512
MODULUS_BITS_MAX = 8192
POOL_SIZE_DEFAULT = 64

SESSION_KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # AES-GCM standard nonce


class ObfuscatorPool:
    """Precomputed r^N mod N^2 values for one public key, each handed out once."""

    def __init__(self, public: phe.PaillierPublicKey, size_max: int = POOL_SIZE_DEFAULT) -> None:
        self._public = public
        self.size_max = size_max
        self._ready: deque[int] = deque()
        self._refill_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._ready)

    def _fresh(self) -> int:
        r = self._public.get_random_lt_n()  # SystemRandom, in [1, N)
        return int(powmod(r, self._public.n, self._public.nsquare))

    def refill(self, count: int | None = None) -> int:
        """Compute up to `count` values (default: until full); returns how many were added.
        Call it when idle, e.g. `await asyncio.to_thread(pool.refill)`."""
        added = 0
        with self._refill_lock:
            room = self.size_max - len(self._ready)
            for _ in range(room if count is None else min(count, room)):
                self._ready.append(self._fresh())
                added += 1
        return added

    def take(self) -> int:
        try:
            value = self._ready.popleft()  # atomic: two takers never share a value
        except IndexError:
            self.misses += 1
            return self._fresh()
        self.hits += 1
        return value


@dataclass(frozen=True)
class PaillierPublicKey:
    """pk = (N, g) with g = N + 1 (eq. 5); `pool` holds precomputed r^N for eq. (6)."""

    n: int
    _phe: phe.PaillierPublicKey = field(init=False, repr=False, compare=False)
    pool: ObfuscatorPool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        assert MODULUS_BITS_MIN <= self.n.bit_length() <= MODULUS_BITS_MAX and self.n % 2 == 1
        public = phe.PaillierPublicKey(self.n)
        object.__setattr__(self, "_phe", public)
        object.__setattr__(self, "pool", ObfuscatorPool(public))

    @property
    def modulus_bytes(self) -> int:
        return (self.n.bit_length() + 7) // 8

    @property
    def ciphertext_bytes(self) -> int:
        return 2 * self.modulus_bytes

    def to_bytes(self) -> bytes:
        return self.n.to_bytes(self.modulus_bytes, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPublicKey:
        n = int.from_bytes(data, "big")
        bits = n.bit_length()
        if len(data) != (bits + 7) // 8:
            raise BadKey("a Paillier modulus has no leading zero bytes")
        if not MODULUS_BITS_MIN <= bits <= MODULUS_BITS_MAX:
            raise BadKey(f"Paillier modulus of {bits} bits, need "
                         f"{MODULUS_BITS_MIN}..{MODULUS_BITS_MAX}")
        if n % 2 == 0 or gmpy2.is_prime(n):
            raise BadKey("a Paillier modulus is an odd composite")
        return cls(n)

    def encrypt(self, plaintext: int) -> PaillierCiphertext:
        """C = g^M * r^N mod N^2 (eq. 6) with a fresh r from the pool."""
        if not 0 <= plaintext < self.n:
            raise PlaintextOutOfRange(plaintext, self.n.bit_length())
        # r_value=1 makes phe return g^M = 1 + M*N mod N^2 alone; r^N comes from the pool.
        nude = self._phe.raw_encrypt(plaintext, r_value=1)
        counters.record(counters.Op.PAILLIER_EXP)
        value = int(mulmod(nude, self.pool.take(), self._phe.nsquare))
        return PaillierCiphertext(value=value, public_key=self)

    def ciphertext_from_bytes(self, data: bytes) -> PaillierCiphertext:
        if len(data) != self.ciphertext_bytes:
            raise BadCiphertext(f"a ciphertext under this key is {self.ciphertext_bytes} bytes, "
                                f"got {len(data)}")
        value = int.from_bytes(data, "big")
        if not 0 < value < self._phe.nsquare or math.gcd(value, self.n) != 1:
            raise BadCiphertext("ciphertext is not in Z*_{N^2}")
        return PaillierCiphertext(value=value, public_key=self)


@dataclass(frozen=True)
class PaillierCiphertext:
    value: int
    public_key: PaillierPublicKey = field(repr=False)

    def __add__(self, other: PaillierCiphertext) -> PaillierCiphertext:
        """E(m1) * E(m2) mod N^2 = E(m1 + m2 mod N): the additive homomorphism."""
        if other.public_key != self.public_key:
            raise BadCiphertext("cannot add ciphertexts under different keys")
        nsquare = self.public_key._phe.nsquare
        return PaillierCiphertext(int(mulmod(self.value, other.value, nsquare)), self.public_key)

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(self.public_key.ciphertext_bytes, "big")


class _PrimesRecord(rlp.Serializable):
    fields = [("p", big_endian_int), ("q", big_endian_int)]


@dataclass(frozen=True)
class PaillierPrivateKey:
    """sk = (lambda, mu) (eqs. 3-5), kept as the primes p, q from which phe derives them."""

    p: int = field(repr=False)
    q: int = field(repr=False)
    public_key: PaillierPublicKey = field(init=False)
    _phe: phe.PaillierPrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        public = PaillierPublicKey(self.p * self.q)
        object.__setattr__(self, "public_key", public)
        object.__setattr__(self, "_phe", phe.PaillierPrivateKey(public._phe, self.p, self.q))

    @classmethod
    def generate(cls, bits: int = MODULUS_BITS_DEFAULT) -> PaillierPrivateKey:
        if not MODULUS_BITS_MIN <= bits <= MODULUS_BITS_MAX:
            raise BadKey(f"Paillier modulus size {bits} outside "
                         f"{MODULUS_BITS_MIN}..{MODULUS_BITS_MAX}")
        _, private = phe.generate_paillier_keypair(n_length=bits)
        return cls(int(private.p), int(private.q))

    def to_bytes(self) -> bytes:
        encoded: bytes = rlp.encode(_PrimesRecord(self.p, self.q))
        return encoded

    @classmethod
    def from_bytes(cls, data: bytes) -> PaillierPrivateKey:
        try:
            record = rlp.decode(data, _PrimesRecord)
        except rlp.exceptions.RLPException as exc:
            raise BadKey(f"unreadable Paillier private key: {exc}") from exc
        p, q = record.p, record.q
        if p == q or not (gmpy2.is_prime(p) and gmpy2.is_prime(q)):
            raise BadKey("a Paillier private key is two distinct primes")
        if not MODULUS_BITS_MIN <= (p * q).bit_length() <= MODULUS_BITS_MAX:
            raise BadKey("Paillier modulus size out of range")
        return cls(p, q)

    def decrypt(self, ciphertext: PaillierCiphertext) -> int:
        """M = L(C^lambda mod N^2) * mu mod N (eq. 7); phe evaluates it with the CRT."""
        if ciphertext.public_key != self.public_key:
            raise BadCiphertext("ciphertext is under another public key")
        counters.record(counters.Op.PAILLIER_EXP)
        return int(self._phe.raw_decrypt(ciphertext.value))


class _HybridRecord(rlp.Serializable):
    fields = [
        ("key_ciphertext", binary),
        ("nonce", Binary.fixed_length(NONCE_BYTES)),
        ("body", binary),
    ]


def hybrid_encrypt(public_key: PaillierPublicKey, plaintext: bytes,
                   associated_data: bytes = b"") -> bytes:
    """Encrypt bytes of any length: Paillier(AES key) || AES-256-GCM(body).

    `associated_data` is authenticated, not encrypted; the decryptor must pass the same."""
    session_key = secrets.token_bytes(SESSION_KEY_BYTES)
    key_ciphertext = public_key.encrypt(int.from_bytes(session_key, "big")).to_bytes()
    nonce = secrets.token_bytes(NONCE_BYTES)
    body = AESGCM(session_key).encrypt(nonce, plaintext, key_ciphertext + associated_data)
    encoded: bytes = rlp.encode(_HybridRecord(key_ciphertext, nonce, body))
    return encoded


def hybrid_decrypt(private_key: PaillierPrivateKey, data: bytes,
                   associated_data: bytes = b"") -> bytes:
    """Inverse of `hybrid_encrypt`; BadCiphertext on any malformation or tampering."""
    try:
        record = rlp.decode(data, _HybridRecord)
    except rlp.exceptions.RLPException as exc:
        raise BadCiphertext(f"not a hybrid ciphertext: {exc}") from exc
    key_ct = private_key.public_key.ciphertext_from_bytes(record.key_ciphertext)
    key_int = private_key.decrypt(key_ct)
    if key_int.bit_length() > 8 * SESSION_KEY_BYTES:
        raise BadCiphertext("encapsulated key out of range")
    session_key = key_int.to_bytes(SESSION_KEY_BYTES, "big")
    try:
        return AESGCM(session_key).decrypt(record.nonce, record.body,
                                           record.key_ciphertext + associated_data)
    except InvalidTag as exc:
        raise BadCiphertext("hybrid ciphertext fails authentication") from exc
