"""Small helpers shared by the consortium contracts: parameter parsing, typed storage
records, reading another contract's views from inside a method, and account creation.
"""

from __future__ import annotations

from chain import Account, Value
from crypto import Address
from vm import CallContext, Revert

ADDRESS_BYTES = 20
HASH_BYTES = 32


def parse_address(text: str) -> Address:
    """A genesis parameter address: 40 hex digits, with or without 0x."""
    address = bytes.fromhex(text.removeprefix("0x"))
    if len(address) != ADDRESS_BYTES:
        raise ValueError(f"address {text!r} is not 20 bytes")
    return address


def require(condition: bool, reason: str, detail: str = "") -> None:
    """Refuse the call with a stable reason code unless `condition` holds."""
    if not condition:
        raise Revert(reason, detail)


def check_address(value: bytes, what: str) -> None:
    require(len(value) == ADDRESS_BYTES, "bad-address", f"{what} must be 20 bytes")


def check_hash(value: bytes, what: str) -> None:
    require(len(value) == HASH_BYTES, "bad-hash", f"{what} must be 32 bytes")


def ensure_account(ctx: CallContext, address: Address) -> None:
    """Registration creates the member's account: the mempool refuses unknown senders."""
    if ctx.state.account(address) is None:
        ctx.state.set_account(address, Account(0, 0))


def get_list(ctx: CallContext, key: bytes) -> list[Value]:
    stored = ctx.get_value(key)
    if stored is None:
        return []
    assert isinstance(stored, list), "stored value is not a list"
    return stored


def get_bytes(ctx: CallContext, key: bytes) -> bytes | None:
    stored = ctx.get_value(key)
    assert stored is None or isinstance(stored, bytes), "stored value is not bytes"
    return stored


def int_key(prefix: bytes, number: int) -> bytes:
    return prefix + number.to_bytes(8, "big")
