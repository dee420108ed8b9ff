"""Runs native contract calls: intrinsic gas, value transfer, dispatch by method name with
typed arguments, and all-or-nothing writes (a reverted call is undone whole and its output
carries the reason). Also runs the end-of-block hooks and read-only views.

The engine returns a `CallOutput`; the ledger makes its receipt of it (chain/execution.py
`make_receipt`), so vm/ knows the records below it (values, state, events) and nothing of
the transition above it. A contract's expected failure (`ContractError`) is a revert; any
other exception is a bug and escapes as `InternalError` (vm/errors.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import rlp

from chain import DecodeError, Event, State, Transaction, TxReason, Value
from crypto import Address
from vm import gas
from vm.context import BlockEnv, CallContext, GasMeter, TimedGasMeter, move_balance
from vm.contract import NativeContract
from vm.errors import BadArguments, ContractError, InternalError, ReadOnly, UnknownContract, UnknownMethod

log = logging.getLogger("gridchain.vm")

CALL_DEPTH_MAX = 8
VIEW_GAS_MAX = 50_000_000


@dataclass(frozen=True)
class CallOutput:
    """What a transaction's call (or the end-of-block hooks) did."""

    succeeded: bool
    gas_used: int
    events: list[Event]
    error: bytes  # the revert reason, b"" when it succeeded


class Engine:
    def __init__(self, contracts: list[NativeContract]) -> None:
        self.contracts: dict[Address, NativeContract] = {}
        for contract in contracts:
            assert contract.address not in self.contracts, f"two contracts at {contract.address.hex()}"
            self.contracts[contract.address] = contract
        self.by_name = {c.name: c for c in contracts}

    def contract(self, address: Address) -> NativeContract:
        contract = self.contracts.get(address)
        if contract is None:
            raise UnknownContract(f"no contract at 0x{address.hex()}")
        return contract

    # transactions -------------------------------------------------------------------------
    def execute(self, state: State, tx: Transaction, block: BlockEnv) -> CallOutput:
        """Run `tx` (already checked and nonce-bumped by the ledger). A revert is an output
        that says what went wrong; a bug raises InternalError."""
        meter = GasMeter(tx.gas_limit)
        ctx = CallContext(self, state, block, tx.to, tx.sender_address, tx.sender_address,
                          tx.value, meter)
        mark = state.snapshot()
        try:
            meter.charge(gas.TX_BASE + gas.TX_BYTE * len(rlp.encode(tx)))
            self._dispatch(ctx, tx.method_name, tx.decoded_args)
        except REVERTS as exc:
            state.revert(mark)
            return CallOutput(False, meter.used, [], _revert_reason(exc))
        except Exception as exc:
            state.revert(mark)  # the state stays usable: a proposer goes on without this call
            raise InternalError(self._name(tx.to), tx.method_name, exc) from exc
        state.commit(mark)
        return CallOutput(True, meter.used, ctx.events, b"")

    def call(self, parent: CallContext, contract: Address, method: str, args: list[Value],
             value: int) -> Value:
        if parent.depth >= CALL_DEPTH_MAX:
            raise ContractError(f"call depth above {CALL_DEPTH_MAX}")
        ctx = CallContext(self, parent.state, parent.block, contract, parent.contract,
                          parent.origin, value, parent.meter, parent.events, parent.read_only,
                          parent.depth + 1)
        return self._dispatch(ctx, method, args)

    def _dispatch(self, ctx: CallContext, name: str, args: list[Value]) -> Value:
        contract = self.contract(ctx.contract)
        spec = contract.method_spec(name)
        if spec is None:
            raise UnknownMethod(f"{contract.name} has no method {name!r}")
        if spec.kind != "method" and not ctx.read_only:
            raise ReadOnly(f"{contract.name}.{name} is a view")
        spec.check_args(args)
        if ctx.value:
            move_balance(ctx.state, ctx.sender, ctx.contract, ctx.value)
        result: Value = spec.function(contract, ctx, *args)
        return result

    # views ------------------------------------------------------------------------------
    def call_view(self, state: State, contract: Address, name: str, args: list[Value],
                  block: BlockEnv, caller: Address = b"\x00" * 20, time_ms_max: int = 1_000) -> Value:
        """A read-only call (RPC contract_call), bounded by VIEW_GAS_MAX and `time_ms_max`.
        Raises ContractError on failure."""
        meter = TimedGasMeter(VIEW_GAS_MAX, deadline=time.monotonic() + time_ms_max / 1000)
        ctx = CallContext(self, state, block, contract, caller, caller, 0, meter, read_only=True)
        try:
            return self._run_view(ctx, name, args)
        except OverflowError as exc:
            raise BadArguments(f"{name}: {_out_of_range(exc)}") from exc

    def view(self, parent: CallContext, contract: Address, name: str, args: list[Value]) -> Value:
        """Another contract's view from inside a call, on the caller's state and gas meter."""
        if parent.depth >= CALL_DEPTH_MAX:
            raise ContractError(f"call depth above {CALL_DEPTH_MAX}")
        ctx = CallContext(self, parent.state, parent.block, contract, parent.contract, parent.origin, 0,
                          parent.meter, [], read_only=True, depth=parent.depth + 1)
        return self._run_view(ctx, name, args)

    def _run_view(self, ctx: CallContext, name: str, args: list[Value]) -> Value:
        target = self.contract(ctx.contract)
        spec = target.method_spec(name)
        if spec is None:
            raise UnknownMethod(f"{target.name} has no method {name!r}")
        if spec.kind != "view":
            raise ReadOnly(f"{target.name}.{name} changes state; send a transaction")
        spec.check_args(args)
        result: Value = spec.function(target, ctx, *args)
        return result

    # end of block -----------------------------------------------------------------------
    def end_block(self, state: State, block: BlockEnv) -> CallOutput:
        """Run every contract's end-of-block hook (policy triggers, deadlines) in address
        order. Its events form the block's last receipt, after the transactions'."""
        meter = GasMeter(gas.END_BLOCK_BUDGET)
        events: list[Event] = []
        succeeded = True
        error = b""
        for address in sorted(self.contracts):
            ctx = CallContext(self, state, block, address, address, address, 0, meter)
            mark = state.snapshot()
            try:
                self.contracts[address].end_block(ctx)
            except REVERTS as exc:  # a revert undoes that hook only
                state.revert(mark)
                succeeded, error = False, _revert_reason(exc)
                log.warning("end-of-block hook of %s failed: %s", self.contracts[address].name, exc)
                continue
            except ENVIRONMENT_ERRORS as exc:
                # Not the contract's logic: how much memory or stack this process has.
                # Another replica may not meet it, so the block is not applied here.
                raise InternalError(self.contracts[address].name, "end_block", exc) from exc
            except Exception as exc:
                # A bug in the hook. Unlike a transaction's, it cannot be left out of the
                # block: it runs in every block, so raising would stop every proposer in
                # turn, for good. The same code on the same state fails the same way on
                # every replica, so the hook is undone, its failure is the receipt's error
                # and the block goes on (the other hooks still run).
                state.revert(mark)
                succeeded, error = False, f"{TxReason.INTERNAL_ERROR}: {self.contracts[address].name}".encode()
                log.error("end-of-block hook of %s has a bug, undone in block %d",
                          self.contracts[address].name, block.number, exc_info=exc)
                continue
            state.commit(mark)
            events.extend(ctx.events)
        return CallOutput(succeeded, meter.used, events, error)

    def _name(self, address: Address) -> str:
        contract = self.contracts.get(address)
        return contract.name if contract is not None else f"0x{address.hex()}"


# What reverts a call: the contract's own errors, and arguments the engine could not take
# (undecodable values, or integers a contract cannot turn into its fixed-width keys with
# int.to_bytes: the caller's error, not the contract's).
REVERTS = (ContractError, DecodeError, OverflowError)
# What a replica's process may meet where another's does not: never a deterministic result.
ENVIRONMENT_ERRORS = (MemoryError, RecursionError, OSError)


def _revert_reason(exc: Exception) -> bytes:
    if isinstance(exc, ContractError):
        return str(exc).encode()
    if isinstance(exc, OverflowError):
        return f"{BadArguments.reason}: {_out_of_range(exc)}".encode()
    return f"{BadArguments.reason}: {exc}".encode()


def _out_of_range(exc: OverflowError) -> str:
    return f"integer argument out of range ({exc})"
