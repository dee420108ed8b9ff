"""The call context a native contract sees: who called, with what value, in which block,
and metered access to its own storage, events, transfers and calls into other contracts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chain import Event, State, Value
from chain.state import storage_key
from chain.values import value_from_bytes, value_to_bytes
from crypto import Address, Hash32
from vm import gas
from vm.errors import InsufficientFunds, OutOfGas, ReadOnly, ViewTimeout

if TYPE_CHECKING:
    from vm.engine import Engine


@dataclass(frozen=True)
class BlockEnv:
    """What a contract may know about the block: its number, its time, and the hash of its
    parent (the only source of unpredictability, architecture decision 7)."""

    number: int
    timestamp_ms: int
    parent_hash: Hash32
    chain_id: int

    @property
    def time_s(self) -> int:
        return self.timestamp_ms // 1000


@dataclass
class GasMeter:
    limit: int
    used: int = 0

    def charge(self, amount: int) -> None:
        self.used += amount
        if self.used > self.limit:
            self.used = self.limit
            raise OutOfGas(f"limit {self.limit}")


@dataclass
class TimedGasMeter(GasMeter):
    """Gas plus a wall-clock deadline, for RPC views: gas bounds the steps of a view, not
    its time (a trie read from a cold page cache costs far more than its gas says), and a
    view shares the process with consensus. Block execution keeps the plain meter, which
    stays deterministic."""

    deadline: float = 0.0  # time.monotonic() seconds

    def charge(self, amount: int) -> None:
        super().charge(amount)
        if time.monotonic() > self.deadline:
            raise ViewTimeout(f"deadline passed after {self.used} gas")


@dataclass
class CallContext:
    engine: Engine
    state: State
    block: BlockEnv
    contract: Address  # the contract being run
    sender: Address  # immediate caller: an account or a contract
    origin: Address  # signer of the transaction (or the contract itself in end-of-block hooks)
    value: int  # moved from sender to contract before the call
    meter: GasMeter
    events: list[Event] = field(default_factory=list)
    read_only: bool = False
    depth: int = 0  # nesting of contract-to-contract calls

    # storage ----------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        self.meter.charge(gas.STORAGE_READ)
        return self.state.get(storage_key(self.contract, key))

    def set(self, key: bytes, value: bytes) -> None:
        self._writable()
        self.meter.charge(gas.STORAGE_WRITE + gas.STORAGE_BYTE * (len(key) + len(value)))
        self.state.set(storage_key(self.contract, key), value)

    def delete(self, key: bytes) -> None:
        self._writable()
        self.meter.charge(gas.STORAGE_DELETE)
        self.state.delete(storage_key(self.contract, key))

    def get_value(self, key: bytes, default: Value | None = None) -> Value | None:
        raw = self.get(key)
        return value_from_bytes(raw) if raw is not None else default

    def get_int(self, key: bytes, default: int = 0) -> int:
        value = self.get_value(key)
        assert value is None or isinstance(value, int), "stored value is not an int"
        return default if value is None else value

    def set_value(self, key: bytes, value: Value) -> None:
        self.set(key, value_to_bytes(value))

    # effects ----------------------------------------------------------------------------
    def emit(self, name: str, **fields: Value) -> None:
        self._writable()
        event = Event.create(self.contract, name, fields)
        self.meter.charge(gas.EVENT + gas.EVENT_BYTE * len(name))
        self.events.append(event)

    def balance(self, address: Address) -> int:
        self.meter.charge(gas.STORAGE_READ)
        return self.state.balance(address)

    def transfer(self, to: Address, amount: int) -> None:
        """Pay `amount` from this contract's own balance."""
        self._writable()
        self.meter.charge(gas.TRANSFER)
        move_balance(self.state, self.contract, to, amount)

    def steps(self, count: int) -> None:
        """Charge for `count` iterations of a loop whose length depends on the input."""
        self.meter.charge(gas.LOOP_STEP * count)

    def call(self, contract: Address, method: str, args: list[Value], value: int = 0) -> Value:
        """Call another native contract as this contract (msg.sender = this contract)."""
        self.meter.charge(gas.CALL)
        return self.engine.call(self, contract, method, args, value)

    def view(self, contract: Address, method: str, args: list[Value]) -> Value:
        """Read another contract's view (read-only, same gas meter)."""
        self.meter.charge(gas.CALL)
        return self.engine.view(self, contract, method, args)

    def _writable(self) -> None:
        if self.read_only:
            raise ReadOnly("a view cannot change state")


def move_balance(state: State, source: Address, to: Address, amount: int) -> None:
    if amount < 0:
        raise InsufficientFunds("negative amount")
    if state.balance(source) < amount:
        raise InsufficientFunds(f"balance {state.balance(source)} < {amount}")
    if amount:
        state.add_balance(source, -amount)
        state.add_balance(to, amount)
