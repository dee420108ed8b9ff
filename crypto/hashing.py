"""keccak256, the one hash of the ledger (architecture decision 1)."""

from eth_hash.auto import keccak as _keccak

Hash32 = bytes


def keccak256(data: bytes) -> Hash32:
    return _keccak(data)
