"""Cryptographic building blocks: keccak256 hashing, Ed25519 keys (transactions and
consensus messages), BLS12-381 short signatures (eqs. 1-2; arkworks fast backend, py_ecc
reference) and Paillier encryption (eqs. 3-7) for the diagnosis messages, plus the
operation counters behind the paper's Table 4.

Every primitive comes from a maintained library; nothing here implements one.

Public face: hashing, Ed25519 keys and the errors, below; BLS (crypto.bls) and Paillier
(crypto.paillier) are imported from their modules, by the diagnosis code that needs them
(their backends take a while to load).
"""

from crypto.errors import BadCiphertext, BadKey, BadSignature, CryptoError, PlaintextOutOfRange, UnknownBackend
from crypto.hashing import Hash32, keccak256
from crypto.keys import Address, KeyPair, address_of, is_valid_signature, verify

__all__ = [
    "Address", "BadCiphertext", "BadKey", "BadSignature", "CryptoError", "Hash32", "KeyPair", "PlaintextOutOfRange",
    "UnknownBackend", "address_of", "is_valid_signature", "keccak256", "verify",
]
