"""Ed25519 keys for accounts and bookkeepers (architecture decision 5).

An account address is the last 20 bytes of keccak256(public key), as in Ethereum. Key
files are crypto/keystore.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from crypto.errors import BadKey, BadSignature
from crypto.hashing import keccak256

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
ADDRESS_BYTES = 20

Address = bytes


def address_of(public_key: bytes) -> Address:
    return keccak256(public_key)[-ADDRESS_BYTES:]


def verify(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Raise BadSignature unless `signature` is `public_key`'s signature on `message`."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        raise BadSignature("wrong key or signature length")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise BadSignature("signature does not verify") from exc


def is_valid_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        verify(public_key, signature, message)
    except BadSignature:
        return False
    return True


@dataclass(frozen=True)
class KeyPair:
    private: Ed25519PrivateKey
    public_key: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_private(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """Deterministic key from a 32-byte seed (tests and development accounts)."""
        if len(seed) != 32:
            raise BadKey("an Ed25519 seed is 32 bytes")
        return cls.from_private(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_private(cls, private: Ed25519PrivateKey) -> KeyPair:
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return cls(private=private, public_key=public)

    @property
    def address(self) -> Address:
        return address_of(self.public_key)

    def seed(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)
