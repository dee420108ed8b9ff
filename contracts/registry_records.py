"""Storage records of the registry contract: members and devices as typed records, and the
keys they live under. The contract, the SDK and the light client read them through these.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.codec import StoredRecord
from crypto import Address


@dataclass(frozen=True)
class Member(StoredRecord):
    role: str
    bls_key: bytes  # Y, the BLS12-381 public key of its sealed messages (b"" for none)
    paillier_n: bytes  # N, its Paillier public key (b"" for none)
    registrar: Address  # who admitted it (an administrator, a vendor for its devices, ...)
    active: bool  # False once revoked


@dataclass(frozen=True)
class Device(StoredRecord):
    device_type: str  # S
    warranty_end_s: int
    vendor: Address
    phone: Address  # the bound smartphone, b"" when none is bound


def member_key(address: Address) -> bytes:
    return b"m:" + address


def device_key(address: Address) -> bytes:
    return b"d:" + address


def phone_key(address: Address) -> bytes:
    return b"p:" + address


def endpoint_key(address: Address) -> bytes:
    return b"e:" + address


def nonce_key(address: Address) -> bytes:
    return b"n:" + address
