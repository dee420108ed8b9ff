"""The native token (the paper's "ETH", architecture decision 10): transfers between accounts
and escrow for deposits.

Escrow: a contract that received value (a deposit sent with a transaction) locks it here
under an id of its choosing; only that holder contract can later pay it out, release the
rest to the owner, or forfeit it. Escrowed funds sit in this contract's own balance, so
the sum of all balances never changes: conservation is checked by tests.
"""

from __future__ import annotations

from typing import Any

from chain import Value
from contracts.addresses import TOKEN
from vm import CallContext, NativeContract, Revert, method, view
from vm.context import move_balance

ESCROW_PREFIX = b"escrow:"


def _escrow_key(holder: bytes, escrow_id: bytes) -> bytes:
    return ESCROW_PREFIX + holder + escrow_id


class Token(NativeContract):
    name = "token"
    address = TOKEN

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    @method
    def transfer(self, ctx: CallContext, to: bytes, amount: int) -> None:
        if amount <= 0:
            raise Revert("bad-amount", "amount must be positive")
        if ctx.state.account(to) is None:
            raise Revert("unknown-recipient", f"0x{to.hex()} has no account")
        move_balance(ctx.state, ctx.sender, to, amount)
        ctx.emit("Transfer", sender=ctx.sender, to=to, amount=amount)

    @method
    def escrow_lock(self, ctx: CallContext, escrow_id: bytes, owner: bytes) -> None:
        """Lock the call's value under (caller, escrow_id) on behalf of `owner`."""
        if ctx.value <= 0:
            raise Revert("bad-amount", "escrow needs a positive value")
        key = _escrow_key(ctx.sender, escrow_id)
        if ctx.get(key) is not None:
            raise Revert("escrow-exists", f"escrow 0x{escrow_id.hex()} already locked")
        ctx.set_value(key, [owner, ctx.value])
        ctx.emit("EscrowLocked", holder=ctx.sender, id=escrow_id, owner=owner, amount=ctx.value)

    @method
    def escrow_pay(self, ctx: CallContext, escrow_id: bytes, to: bytes, amount: int) -> None:
        """Pay part of an escrow to `to` (e.g. the agreed price to the winning bidder)."""
        owner, held = self._held(ctx, escrow_id)
        if not 0 < amount <= held:
            raise Revert("bad-amount", f"pay {amount} from escrow holding {held}")
        self._set_held(ctx, escrow_id, owner, held - amount)
        ctx.transfer(to, amount)
        ctx.emit("EscrowPaid", holder=ctx.sender, id=escrow_id, to=to, amount=amount)

    @method
    def escrow_release(self, ctx: CallContext, escrow_id: bytes) -> None:
        """Return what is left of an escrow to its owner."""
        owner, held = self._held(ctx, escrow_id)
        self._set_held(ctx, escrow_id, owner, 0)
        ctx.transfer(owner, held)
        ctx.emit("EscrowReleased", holder=ctx.sender, id=escrow_id, owner=owner, amount=held)

    @method
    def escrow_forfeit(self, ctx: CallContext, escrow_id: bytes, to: bytes) -> None:
        """Give what is left of an escrow to `to` instead of its owner (a defaulting party)."""
        owner, held = self._held(ctx, escrow_id)
        self._set_held(ctx, escrow_id, owner, 0)
        ctx.transfer(to, held)
        ctx.emit("EscrowForfeited", holder=ctx.sender, id=escrow_id, owner=owner, to=to,
                 amount=held)

    @view
    def balance_of(self, ctx: CallContext, account: bytes) -> int:
        return ctx.balance(account)

    @view
    def escrow(self, ctx: CallContext, holder: bytes, escrow_id: bytes) -> Value:
        stored = ctx.get_value(_escrow_key(holder, escrow_id))
        return stored if stored is not None else []

    # ------------------------------------------------------------------------------------
    def _held(self, ctx: CallContext, escrow_id: bytes) -> tuple[bytes, int]:
        stored = ctx.get_value(_escrow_key(ctx.sender, escrow_id))
        if stored is None:
            raise Revert("no-escrow", f"no escrow 0x{escrow_id.hex()} held by the caller")
        assert isinstance(stored, list), "escrow record is a list"
        owner, amount = stored
        assert isinstance(owner, bytes) and isinstance(amount, int), "escrow record types"
        return owner, amount

    def _set_held(self, ctx: CallContext, escrow_id: bytes, owner: bytes, amount: int) -> None:
        key = _escrow_key(ctx.sender, escrow_id)
        if amount:
            ctx.set_value(key, [owner, amount])
        else:
            ctx.delete(key)

