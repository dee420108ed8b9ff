"""BLS short signatures on BLS12-381 for the diagnosis messages (paper eqs. 1-2).

The minimal-signature-size variant: signatures sigma = x * H(M) are 48-byte compressed G1
points, public keys pk = x * P are 96-byte compressed G2 points, both in the ZCash /
IETF serialisation. H is the RFC 9380 hash-to-curve suite BLS12381G1_XMD:SHA-256_SSWU_RO_
with the IETF BLS basic-scheme domain separation tag `DST`; secret keys come from the
IETF KeyGen (HKDF-SHA-256). Verification checks eq. (2), e(P, sigma) = e(pk, H(M)), as one
multi-pairing.

Two backends sit behind one interface: `py_arkworks_bls12381` ("arkworks", fast, used
everywhere) and `py_ecc` ("py_ecc", a pure-Python reference that is never on a hot path).
They produce byte-identical keys and signatures (tests/test_crypto_bls.py). The backend is
chosen in one place, `default_backend()`, from the environment variable
GRIDCHAIN_BLS_BACKEND (default "arkworks").

Every decoded point must be the canonical encoding of a non-identity point of the
prime-order subgroup; anything else is rejected with BadKey (public keys) or BadSignature
(signatures), never an uncaught library error.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from crypto import counters
from crypto.errors import BadKey, BadSignature, UnknownBackend

# IETF draft-irtf-cfrg-bls-signature-05 §4.2.1, basic scheme, minimal-signature-size. The
# basic scheme is safe here because diagnosis signatures are never aggregated.
DST = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"

CURVE_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
SECRET_KEY_BYTES = 32
SEED_BYTES_MIN = 32  # KeyGen needs at least 32 bytes of input keying material
PUBLIC_KEY_BYTES = 96  # compressed G2
SIGNATURE_BYTES = 48  # compressed G1

BACKEND_ENV = "GRIDCHAIN_BLS_BACKEND"
BACKEND_DEFAULT = "arkworks"

_KEYGEN_SALT = b"BLS-SIG-KEYGEN-SALT-"
_KEYGEN_OKM_BYTES = 48  # ceil(3 * ceil(log2(r)) / 16), the draft's L


def _keygen(ikm: bytes) -> int:
    """IETF draft-irtf-cfrg-bls-signature-05 §2.3 KeyGen with empty key_info."""
    salt = _KEYGEN_SALT
    secret = 0
    while secret == 0:
        salt = hashlib.sha256(salt).digest()
        prk = HKDF.extract(hashes.SHA256(), salt, ikm + b"\x00")
        okm = HKDFExpand(hashes.SHA256(), _KEYGEN_OKM_BYTES,
                         _KEYGEN_OKM_BYTES.to_bytes(2, "big")).derive(prk)
        secret = int.from_bytes(okm, "big") % CURVE_ORDER
    return secret


@dataclass(frozen=True)
class BlsPrivateKey:
    """A secret scalar x in [1, r) (paper Section II.C, key generation)."""

    scalar: int = field(repr=False)

    def __post_init__(self) -> None:
        assert 0 < self.scalar < CURVE_ORDER, "construct through generate/from_seed/from_bytes"

    @classmethod
    def generate(cls) -> BlsPrivateKey:
        return cls.from_seed(secrets.token_bytes(SEED_BYTES_MIN))

    @classmethod
    def from_seed(cls, seed: bytes) -> BlsPrivateKey:
        """Deterministic key from at least 32 bytes of secret seed (IETF KeyGen)."""
        if len(seed) < SEED_BYTES_MIN:
            raise BadKey(f"a BLS seed is at least {SEED_BYTES_MIN} bytes, got {len(seed)}")
        return cls(_keygen(seed))

    @classmethod
    def from_bytes(cls, data: bytes) -> BlsPrivateKey:
        if len(data) != SECRET_KEY_BYTES:
            raise BadKey(f"a BLS secret key is {SECRET_KEY_BYTES} bytes, got {len(data)}")
        scalar = int.from_bytes(data, "big")
        if not 0 < scalar < CURVE_ORDER:
            raise BadKey("a BLS secret key must lie in [1, r)")
        return cls(scalar)

    def to_bytes(self) -> bytes:
        return self.scalar.to_bytes(SECRET_KEY_BYTES, "big")

    def public_key(self, backend: BlsBackend | None = None) -> bytes:
        """pk = x * P with P the G2 generator, compressed (96 bytes)."""
        return (backend or default_backend()).public_key(self.scalar)


class BlsBackend(Protocol):
    """What a BLS12-381 library must provide. Inputs are already length-checked."""

    name: str

    def public_key(self, scalar: int) -> bytes: ...

    def sign(self, scalar: int, message: bytes) -> bytes: ...

    def check_public_key(self, public_key: bytes) -> None:
        """Raise BadKey unless the bytes are a canonical non-identity G2 subgroup point."""
        ...

    def pairing_equation_holds(self, public_key: bytes, message: bytes,
                               signature: bytes) -> bool:
        """Eq. (2). Raise BadKey / BadSignature on a malformed key / signature."""
        ...


class ArkworksBackend:
    """py_arkworks_bls12381 (Rust arkworks): the backend of every hot path."""

    name = "arkworks"

    def __init__(self) -> None:
        import py_arkworks_bls12381 as ark

        self._ark = ark
        self._g2 = ark.G2Point()
        self._neg_g2 = -ark.G2Point()

    def _scalar(self, scalar: int) -> Any:
        # Scalar(int) does not reduce mod r; the canonical 32-byte form is checked instead.
        return self._ark.Scalar.from_be_bytes(scalar.to_bytes(SECRET_KEY_BYTES, "big"))

    def public_key(self, scalar: int) -> bytes:
        return bytes((self._g2 * self._scalar(scalar)).to_compressed_bytes())

    def sign(self, scalar: int, message: bytes) -> bytes:
        point = self._ark.G1Point.hash_to_curve(message, DST)
        return bytes((point * self._scalar(scalar)).to_compressed_bytes())

    def _g2_point(self, public_key: bytes) -> Any:
        try:
            point = self._ark.G2Point.from_compressed_bytes(public_key)
        except ValueError as exc:
            raise BadKey(f"not a G2 subgroup point: {exc}") from exc
        _check_canonical(bytes(point.to_compressed_bytes()), public_key, BadKey)
        if point == self._ark.G2Point.identity():
            raise BadKey("public key is the point at infinity")
        return point

    def check_public_key(self, public_key: bytes) -> None:
        self._g2_point(public_key)

    def pairing_equation_holds(self, public_key: bytes, message: bytes,
                               signature: bytes) -> bool:
        pk = self._g2_point(public_key)
        try:
            sigma = self._ark.G1Point.from_compressed_bytes(signature)
        except ValueError as exc:
            raise BadSignature(f"not a G1 subgroup point: {exc}") from exc
        _check_canonical(bytes(sigma.to_compressed_bytes()), signature, BadSignature)
        if sigma == self._ark.G1Point.identity():
            raise BadSignature("signature is the point at infinity")
        hashed = self._ark.G1Point.hash_to_curve(message, DST)
        # eq. (2) as e(sigma, -P) * e(H(M), pk) == 1: one shared final exponentiation
        return bool(self._ark.GT.pairing_check([sigma, hashed], [self._neg_g2, pk]))


class PyEccBackend:
    """py_ecc: pure-Python reference (about 0.5 s per pairing); tests and benchmarks only."""

    name = "py_ecc"

    def __init__(self) -> None:
        from py_ecc import optimized_bls12_381 as curve
        from py_ecc.bls import hash_to_curve, point_compression

        # Any: py_ecc's annotations name its own tuple aliases, not what we pass.
        self._curve: Any = curve
        self._h2c: Any = hash_to_curve
        self._pc: Any = point_compression

    def public_key(self, scalar: int) -> bytes:
        z1, z2 = self._pc.compress_G2(self._curve.multiply(self._curve.G2, scalar))
        compressed: bytes = z1.to_bytes(48, "big") + z2.to_bytes(48, "big")
        return compressed

    def _hash(self, message: bytes) -> Any:
        return self._h2c.hash_to_G1(message, DST, hashlib.sha256)

    def sign(self, scalar: int, message: bytes) -> bytes:
        point = self._curve.multiply(self._hash(message), scalar)
        return int(self._pc.compress_G1(point)).to_bytes(SIGNATURE_BYTES, "big")

    def _in_subgroup(self, point: Any) -> bool:
        return bool(self._curve.is_inf(self._curve.multiply(point, CURVE_ORDER)))

    def _g2_point(self, public_key: bytes) -> Any:
        z = (int.from_bytes(public_key[:48], "big"), int.from_bytes(public_key[48:], "big"))
        try:
            point = self._pc.decompress_G2(z)
        except ValueError as exc:
            raise BadKey(f"not a G2 point: {exc}") from exc
        if self._curve.is_inf(point):
            raise BadKey("public key is the point at infinity")
        if self._pc.compress_G2(point) != z:
            raise BadKey("non-canonical point encoding")
        if not self._in_subgroup(point):
            raise BadKey("public key is not in the prime-order subgroup")
        return point

    def check_public_key(self, public_key: bytes) -> None:
        self._g2_point(public_key)

    def pairing_equation_holds(self, public_key: bytes, message: bytes,
                               signature: bytes) -> bool:
        c = self._curve
        pk = self._g2_point(public_key)
        z = int.from_bytes(signature, "big")
        try:
            sigma = self._pc.decompress_G1(z)
        except ValueError as exc:
            raise BadSignature(f"not a G1 point: {exc}") from exc
        if c.is_inf(sigma):
            raise BadSignature("signature is the point at infinity")
        if self._pc.compress_G1(sigma) != z:
            raise BadSignature("non-canonical point encoding")
        if not self._in_subgroup(sigma):
            raise BadSignature("signature is not in the prime-order subgroup")
        product = (c.pairing(c.neg(c.G2), sigma, final_exponentiate=False)
                   * c.pairing(pk, self._hash(message), final_exponentiate=False))
        return bool(c.final_exponentiate(product) == c.FQ12.one())


def _check_canonical(reencoded: bytes, given: bytes, error: type[Exception]) -> None:
    # arkworks accepts some non-canonical flag bits (e.g. 0xff.. decodes to infinity);
    # one point must have one encoding, or signatures become malleable.
    if reencoded != given:
        raise error("non-canonical point encoding")


_BACKEND_TYPES: dict[str, type[ArkworksBackend] | type[PyEccBackend]] = {
    ArkworksBackend.name: ArkworksBackend,
    PyEccBackend.name: PyEccBackend,
}
_backends: dict[str, BlsBackend] = {}


def backend_named(name: str) -> BlsBackend:
    """The backend called `name` ("arkworks" or "py_ecc"), created once."""
    if name not in _BACKEND_TYPES:
        raise UnknownBackend(name, tuple(_BACKEND_TYPES))
    if name not in _backends:
        _backends[name] = _BACKEND_TYPES[name]()
    return _backends[name]


def default_backend() -> BlsBackend:
    """The one place the backend is chosen: $GRIDCHAIN_BLS_BACKEND, else arkworks."""
    return backend_named(os.environ.get(BACKEND_ENV, BACKEND_DEFAULT))


def sign(secret_key: BlsPrivateKey, message: bytes, *,
         backend: BlsBackend | None = None) -> bytes:
    """sigma = x * H(M), eq. (1): 48 bytes."""
    counters.record(counters.Op.SIG_MUL)
    return (backend or default_backend()).sign(secret_key.scalar, message)


def validate_public_key(public_key: bytes, *, backend: BlsBackend | None = None) -> None:
    """Raise BadKey unless `public_key` is a usable BLS public key (for registration)."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise BadKey(f"a BLS public key is {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
    (backend or default_backend()).check_public_key(public_key)


def verify(public_key: bytes, message: bytes, signature: bytes, *,
           backend: BlsBackend | None = None) -> None:
    """Raise unless eq. (2) holds: BadKey for a malformed key, BadSignature otherwise."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise BadKey(f"a BLS public key is {PUBLIC_KEY_BYTES} bytes, got {len(public_key)}")
    if len(signature) != SIGNATURE_BYTES:
        raise BadSignature(f"a BLS signature is {SIGNATURE_BYTES} bytes, got {len(signature)}")
    holds = (backend or default_backend()).pairing_equation_holds(public_key, message, signature)
    counters.record(counters.Op.PAIRING, 2)
    if not holds:
        raise BadSignature("BLS signature does not verify")

