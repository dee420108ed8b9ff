"""An in-memory chain for driving the contracts (tests, the vector runner, the benchmark):
named accounts with deterministic keys, one call per transaction, blocks at a clock the
caller moves, views at the head. `DirectChain` runs the same contracts through the same
engine on one in-memory state without block assembly, for the market simulator's
thousands of auctions.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain import ChainStore, Receipt, Transaction, Value
from chain.chain import Chain
from chain.execution import make_receipt
from chain.types import ZERO_HASH
from chain.values import encode_values
from contracts import build_contracts, genesis_from_dict
from contracts.registry import registration_consent
from crypto import Address, KeyPair, keccak256
from vm import BlockEnv, Engine

CHAIN_ID = 7
START_MS = 1_700_000_000_000
BOOKKEEPERS = 3


def key_of(name: str) -> KeyPair:
    return KeyPair.from_seed(keccak256(b"gridchain/test-key/" + name.encode()))


def address_of(name: str) -> Address:
    return key_of(name).address


@dataclass(frozen=True)
class Call:
    sender: str
    to: Address
    method: str
    args: list[Value]
    value: int = 0
    gas_limit: int = 5_000_000


class TestChain:
    """A single-node chain on a temporary LMDB directory; `funded` maps account names to
    genesis balances, `params` are the genesis [contracts.*] tables."""

    __test__ = False  # not a pytest class

    def __init__(self, params: dict[str, Any], funded: dict[str, int], start_ms: int = START_MS) -> None:
        bookkeepers = [{"name": f"b{i}", "public_key": key_of(f"bookkeeper-{i}").public_key.hex()}
                       for i in range(BOOKKEEPERS)]
        accounts = [{"public_key": key_of(name).public_key.hex(), "balance": balance}
                    for name, balance in funded.items()]
        self.genesis = genesis_from_dict({"chain_id": CHAIN_ID, "t": 1, "timestamp_ms": start_ms,
                                          "bookkeepers": bookkeepers, "accounts": accounts,
                                          "contracts": params})
        self._directory = tempfile.TemporaryDirectory(prefix="gridchain-contracts-")
        self.chain = Chain(ChainStore(Path(self._directory.name)), self.genesis,
                           Engine(build_contracts(self.genesis.contract_params)))
        self.now_ms = start_ms
        self._nonces: dict[str, int] = {}

    def close(self) -> None:
        self.chain.store.close()
        self._directory.cleanup()

    def advance(self, ms: int) -> None:
        self.now_ms += ms

    def transaction(self, call: Call) -> Transaction:
        account = self.chain.account(address_of(call.sender))
        nonce = self._nonces.get(call.sender, account.nonce if account else 0)
        self._nonces[call.sender] = nonce + 1
        return Transaction.create(key_of(call.sender), chain_id=CHAIN_ID, nonce=nonce, to=call.to,
                                  method=call.method, args=call.args, value=call.value,
                                  gas_limit=call.gas_limit)

    def block(self, calls: list[Call]) -> list[Receipt]:
        """One block at the current clock holding `calls` in order; returns their receipts
        followed by the end-of-block receipt. Block time strictly increases (chain/), so a
        block at the clock of the last one is 1 ms later, and the clock follows it."""
        txs = [self.transaction(call) for call in calls]
        executed, rejected = self.chain.build(txs, timestamp_ms=self.now_ms, proposer=0, view=0)
        assert not rejected, f"transactions rejected: {rejected}"
        self.chain.append(executed.block)
        self.now_ms = executed.block.header.timestamp_ms
        return list(executed.receipts)

    def send(self, sender: str, to: Address, method: str, args: list[Value], value: int = 0) -> Receipt:
        """One call in a block of its own; returns its receipt."""
        return self.block([Call(sender, to, method, args, value)])[0]

    def view(self, to: Address, method: str, args: list[Value]) -> Value:
        return self.chain.engine.call_view(self.chain.state(), to, method, args, self.chain.view_env())

    def balance(self, name_or_address: str | Address) -> int:
        address = address_of(name_or_address) if isinstance(name_or_address, str) else name_or_address
        return self.chain.state().balance(address)


class DirectChain:
    """The contracts on one in-memory state, started from a TestChain's genesis. A block
    runs each call exactly as `Engine.execute` runs a transaction in a built block (same
    dispatch, gas metering, value transfer and all-or-nothing writes), then the end-of-block
    hooks; what it skips is the ledger around it: signatures, nonces, roots, storage. About
    ten times faster than `TestChain`, so a simulation can run thousands of auctions."""

    def __init__(self, params: dict[str, Any], funded: dict[str, int], start_ms: int = START_MS) -> None:
        self._genesis = TestChain(params, funded, start_ms)
        self.engine = self._genesis.chain.engine
        self.state = self._genesis.chain.state()  # writes stay in its overlay, never flushed
        self.now_ms = start_ms
        self._last_block_ms = start_ms  # the genesis block's time
        self.number = 0
        self._public_keys: dict[str, bytes] = {}

    def close(self) -> None:
        self._genesis.close()

    def advance(self, ms: int) -> None:
        self.now_ms += ms

    def block(self, calls: list[Call]) -> list[Receipt]:
        """One block at the current clock: `calls` in order, then the end-of-block hooks;
        returns the calls' receipts followed by the end-of-block receipt. Block time as in
        TestChain: 1 ms after the last block's when the clock has not moved past it."""
        self.number += 1
        self.now_ms = max(self.now_ms, self._last_block_ms + 1)
        self._last_block_ms = self.now_ms
        env = BlockEnv(self.number, self.now_ms, ZERO_HASH, CHAIN_ID)
        outputs = [self.engine.execute(self.state, self._transaction(call), env) for call in calls]
        return [make_receipt(output) for output in [*outputs, self.engine.end_block(self.state, env)]]

    def send(self, sender: str, to: Address, method: str, args: list[Value], value: int = 0) -> Receipt:
        return self.block([Call(sender, to, method, args, value)])[0]

    def view(self, to: Address, method: str, args: list[Value]) -> Value:
        env = BlockEnv(self.number, self.now_ms, ZERO_HASH, CHAIN_ID)
        return self.engine.call_view(self.state, to, method, args, env)

    def balance(self, name: str) -> int:
        return self.state.balance(address_of(name))

    def _transaction(self, call: Call) -> Transaction:
        """Unsigned: the engine never reads the signature (the ledger checks it)."""
        public_key = self._public_keys.get(call.sender)
        if public_key is None:
            public_key = self._public_keys[call.sender] = key_of(call.sender).public_key
        return Transaction(CHAIN_ID, 0, public_key, call.to, call.method.encode(), encode_values(call.args),
                           call.value, call.gas_limit, b"")


# A small consortium (docs/contracts.md): an administrator, a vendor, suppliers, a device
# out of warranty ("dev") and one in warranty ("wdev"), both bound to "phone".
P_MIN, P_MAX = 10, 200
REQUEST_DEPOSIT, BID_DEPOSIT = 100, 50
FUNDS = 10**9
WARRANTY_S = 10**6  # "wdev" stays in warranty this long after START_MS


def consortium_params(suppliers: list[str], extra_vendors: tuple[str, ...] | list[str] = (),
                      **dsc: Any) -> dict[str, Any]:
    """Genesis contract parameters of the standard test consortium."""
    device = {"vendor": address_of("vendor").hex(), "device_type": "meter", "phone": address_of("phone").hex()}
    return {
        "registry": {
            "admins": [address_of("admin").hex()],
            "members": [{"address": address_of("vendor").hex(), "role": "vendor"},
                        {"address": address_of("phone").hex(), "role": "smartphone"}]
            + [{"address": address_of(n).hex(), "role": "supplier"} for n in suppliers]
            + [{"address": address_of(n).hex(), "role": "vendor"} for n in extra_vendors],
            "devices": [{"address": address_of("dev").hex(), "warranty_end_s": 0, **device},
                        {"address": address_of("wdev").hex(), "warranty_end_s": START_MS // 1000 + WARRANTY_S,
                         **device}],
        },
        "dsc": {"prices": {"meter": {"p_min": P_MIN, "p_max": P_MAX}}, "request_deposit": REQUEST_DEPOSIT,
                "bid_deposit": BID_DEPOSIT, "commit_ms": 60_000, "reveal_ms": 60_000, "service_ms": 600_000,
                **dsc},
    }


def consortium(suppliers: list[str], extra_vendors: tuple[str, ...] | list[str] = (), **dsc: Any) -> TestChain:
    """The standard consortium on a fresh chain, every named account funded."""
    names = ["admin", "vendor", "phone", "dev", "wdev", "stranger", *suppliers, *extra_vendors]
    return TestChain(consortium_params(suppliers, extra_vendors, **dsc), {n: FUNDS for n in names})


def registration(name: str, role: str, registrar: str | Address, *, nonce: int = 0, bls_key: bytes = b"",
                 paillier_n: bytes = b"") -> list[Value]:
    """`registry.register` arguments admitting `name` as `role`, with its key's consent to
    `registrar`: the account that sends the registration, by name, or an address (REGISTRY
    for the administrators' decisions)."""
    key = key_of(name)
    registrar_address = address_of(registrar) if isinstance(registrar, str) else registrar
    consent = registration_consent(key, CHAIN_ID, registrar_address, nonce)
    return [key.address, role, bls_key, paillier_n, key.public_key, consent]


def events(receipt: Receipt, name: str) -> list[dict[str, Value]]:
    """The fields of every event called `name` in `receipt`."""
    return [e.field_values() for e in receipt.events if e.name == name.encode()]


def reason(receipt: Receipt) -> str:
    """The revert reason code of a failed receipt ("" when it succeeded)."""
    error: bytes = receipt.error
    return error.decode().split(":")[0]
