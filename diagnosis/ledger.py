"""The one interface through which agents use the ledger, and its two adapters.

`Ledger` is all an agent needs: send transactions and wait for their receipts, read
views, read contract storage *proven* against a trusted header, prove a transaction's
outcome, and follow contract events. Results have the JSON shapes of the node's RPC
(receipts with `events`, `status`, `error`, `transactionHash`, `blockNumber`; views with
bytes as 0x-hex), so the typed readers of `client.contracts` work on both adapters.

- `RpcLedger`: the SDK client to the consortium's nodes (its URL list is its failover)
  and the light client (`diagnosis.lightclient`), which accepts a header only with the
  bookkeepers' commit certificate. Used by agents in processes and by the demo.
- `LocalLedger`: an in-process chain (`LocalChain`, the contracts on a temporary LMDB,
  one block per call batch at the wall clock), so the agents' logic runs and is tested in
  one process, fast. Its proofs are real Merkle proofs checked by the same
  `verify_proof`; the header is the local chain's own (there is no remote node to
  distrust, so no certificate).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any, Protocol

from chain import BlockHeader, ChainStore, Transaction, Value, decode
from chain import Receipt as LedgerReceipt
from chain.chain import Chain
from chain.genesis import Genesis
from chain.proofs import InvalidProof, prove_receipt, prove_state, prove_transaction, verify_proof
from chain.state import storage_key, trie_key
from chain.values import value_from_bytes
from client import ClientError, GridClient, Receipt, RpcCallError, TransactionFailed
from client.contracts import ContractCall
from contracts import build_contracts
from crypto import Address, KeyPair, keccak256
from diagnosis.lightclient import LightClient, ProvenValue, TrustAnchor, UnprovenState
from rpc.encoding import event_json, hex_bytes, receipt_json, value_from_json, value_to_json
from rpc.subscriptions import Subscription
from vm import Engine

EVENT_QUEUE_MAX = 4096  # per local subscriber; a reader this far behind is a bug in the test


class TransactionRefused(ClientError):
    """The ledger would not take the transaction at all (the mempool's check: unknown
    sender, bad nonce, ...); `reason` is its code. A revert is TransactionFailed."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Ledger(Protocol):
    async def transact(self, call: ContractCall, key: KeyPair) -> Receipt:
        """Send and wait for the final receipt; TransactionFailed (with the receipt) on a
        revert, TransactionRefused when the ledger does not take it at all."""

    async def transact_many(self, calls: list[tuple[ContractCall, KeyPair]]) -> list[Receipt]:
        """Send all, then wait for every receipt (setup batches); failed receipts are returned."""

    async def view(self, contract: str, method: str, args: list[Value] | None = None) -> Any: ...

    async def storage(self, contract: Address, key: bytes) -> ProvenValue:
        """The contract storage slot, proven (UnprovenState when the proof does not check)."""

    async def storage_many(self, slots: Sequence[tuple[Address, bytes]]) -> list[ProvenValue]:
        """Several slots proven against one header, in about the time of one read."""

    async def transaction_outcome(self, tx_hash: bytes) -> tuple[int, BlockHeader]:
        """(receipt status, header) of a transaction, both proven."""

    def events(self, event_filter: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """Contract events matching {contract, name, fields} from now on."""

    async def close(self) -> None: ...


class RpcLedger:
    """The adapter for processes: SDK client (failover over `urls`, connections from
    `local_host` when set: the party's own address) + light client."""

    def __init__(self, urls: list[str], anchor: TrustAnchor, local_host: str | None = None) -> None:
        self.client = GridClient(urls, local_host=local_host)
        self.light = LightClient(self.client, anchor)

    async def transact(self, call: ContractCall, key: KeyPair) -> Receipt:
        try:
            return await call.transact(self.client, key)
        except RpcCallError as exc:
            if exc.reason is None:
                raise
            raise TransactionRefused(exc.reason, exc.message) from exc

    async def transact_many(self, calls: list[tuple[ContractCall, KeyPair]]) -> list[Receipt]:
        hashes = [await call.send(self.client, key) for call, key in calls]
        return list(await asyncio.gather(*(self.client.wait_receipt(h) for h in hashes)))

    async def view(self, contract: str, method: str, args: list[Value] | None = None) -> Any:
        return await self.client.view(contract, method, args)

    async def storage(self, contract: Address, key: bytes) -> ProvenValue:
        return await self.light.storage(contract, key)

    async def storage_many(self, slots: Sequence[tuple[Address, bytes]]) -> list[ProvenValue]:
        return await self.light.storage_many(slots)

    async def transaction_outcome(self, tx_hash: bytes) -> tuple[int, BlockHeader]:
        return await self.light.transaction_outcome(tx_hash)

    async def events(self, event_filter: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        async for event in self.client.subscribe("events", event_filter):
            yield event

    async def close(self) -> None:
        await self.client.close()


class LocalChain:
    """The consortium's contracts on one in-process chain (tests): every `transact_many`
    batch is one block at the wall clock, events go to local subscribers."""

    def __init__(self, genesis: Genesis) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="gridchain-local-")
        self.genesis = genesis
        self.chain = Chain(ChainStore(Path(self._directory.name)), genesis,
                           Engine(build_contracts(genesis.contract_params)))
        self._nonces: dict[bytes, int] = {}
        self._subscribers: list[tuple[Subscription, asyncio.Queue[dict[str, Any]]]] = []
        self._last_ms = genesis.timestamp_ms

    def close(self) -> None:
        self.chain.store.close()
        self._directory.cleanup()

    def ledger(self) -> LocalLedger:
        return LocalLedger(self)

    def block(self, calls: list[tuple[ContractCall, KeyPair]]) -> list[Receipt]:
        txs = [self._transaction(call, key) for call, key in calls]
        now = max(int(time.time() * 1000), self._last_ms + 1)  # block time never goes back
        self._last_ms = now
        executed, rejected = self.chain.build(txs, timestamp_ms=now, proposer=0, view=0)
        if rejected:
            for tx in txs:
                self._nonces.pop(tx.sender_address, None)
            assert len(txs) == 1, f"a setup batch was rejected: {rejected}"
            raise TransactionRefused(rejected[0][1].reason, rejected[0][1].detail)
        assert len(executed.block.transactions) == len(txs), "batch larger than a block"
        self.chain.append(executed.block)
        height = executed.block.header.number
        receipts = [self._receipt_json(tx, receipt, height, i)
                    for i, (tx, receipt) in enumerate(zip(txs, executed.receipts, strict=False))]
        self._publish(executed.block.transactions, list(executed.receipts), height)
        return receipts

    def _transaction(self, call: ContractCall, key: KeyPair) -> Transaction:
        address = key.address
        nonce = self._nonces.get(address)
        if nonce is None:
            account = self.chain.account(address)
            nonce = account.nonce if account else 0
        self._nonces[address] = nonce + 1
        contract = self.chain.engine.by_name[call.contract].address
        return Transaction.create(key, chain_id=self.genesis.chain_id, nonce=nonce, to=contract, method=call.method,
                                  args=list(call.args), value=call.value, gas_limit=call.gas_limit)

    @staticmethod
    def _receipt_json(tx: Transaction, receipt: LedgerReceipt, height: int, index: int) -> Receipt:
        """The receipt as a node's tx_receipt gives it, without the block hash."""
        return Receipt.from_json({**receipt_json(receipt), "transactionHash": hex_bytes(tx.hash),
                                  "blockNumber": height, "index": index})

    def _publish(self, txs: Sequence[Transaction], receipts: list[LedgerReceipt], height: int) -> None:
        for index, receipt in enumerate(receipts):
            tx_hash = hex_bytes(txs[index].hash) if index < len(txs) else None  # None: end-of-block
            for event in receipt.events:
                payload = {**event_json(event), "blockNumber": height, "transactionHash": tx_hash}
                for sub, queue in self._subscribers:
                    if sub.matches(payload):
                        queue.put_nowait(payload)

    def subscribe(self, event_filter: dict[str, Any]) -> tuple[Subscription, asyncio.Queue[dict[str, Any]]]:
        contract = event_filter.get("contract")
        if isinstance(contract, str) and not contract.startswith("0x"):
            contract = hex_bytes(self.chain.engine.by_name[contract].address)
        entry = (Subscription("local", "events", contract, event_filter.get("name"),
                              dict(event_filter.get("fields", {}))),
                 asyncio.Queue[dict[str, Any]](EVENT_QUEUE_MAX))
        self._subscribers.append(entry)
        return entry

    def unsubscribe(self, entry: tuple[Subscription, asyncio.Queue[dict[str, Any]]]) -> None:
        self._subscribers.remove(entry)


class LocalLedger:
    """One agent's view of a `LocalChain` (the adapter for one-process tests)."""

    def __init__(self, local: LocalChain) -> None:
        self.local = local

    async def transact(self, call: ContractCall, key: KeyPair) -> Receipt:
        receipt = self.local.block([(call, key)])[0]
        if not receipt.ok:
            raise TransactionFailed(receipt)
        return receipt

    async def transact_many(self, calls: list[tuple[ContractCall, KeyPair]]) -> list[Receipt]:
        return self.local.block(calls)

    async def view(self, contract: str, method: str, args: list[Value] | None = None) -> Any:
        chain = self.local.chain
        address = chain.engine.by_name[contract].address
        values = value_from_json([value_to_json(a) for a in args or []])  # as the RPC would see them
        assert isinstance(values, list)
        result = chain.engine.call_view(chain.state(), address, method, values, chain.view_env())
        return value_to_json(result) if result is not None else None

    async def storage(self, contract: Address, key: bytes) -> ProvenValue:
        logical = storage_key(contract, key)
        proof = prove_state(self.local.chain, logical)
        try:
            raw = verify_proof(proof.header, "state", trie_key(logical), proof.nodes)
        except InvalidProof as exc:
            raise UnprovenState(str(exc)) from exc
        return ProvenValue(value_from_bytes(raw) if raw else None, proof.header)

    async def storage_many(self, slots: Sequence[tuple[Address, bytes]]) -> list[ProvenValue]:
        # no await between the reads: no block comes in between, one header proves them all
        return [await self.storage(contract, key) for contract, key in slots]

    async def transaction_outcome(self, tx_hash: bytes) -> tuple[int, BlockHeader]:
        tx_proof = prove_transaction(self.local.chain, tx_hash)
        receipt_proof = prove_receipt(self.local.chain, tx_hash)
        try:
            raw_tx = verify_proof(tx_proof.header, "transaction", tx_proof.key, tx_proof.nodes)
            raw_receipt = verify_proof(receipt_proof.header, "receipt", receipt_proof.key, receipt_proof.nodes)
        except InvalidProof as exc:
            raise UnprovenState(str(exc)) from exc
        if keccak256(raw_tx) != tx_hash:
            raise UnprovenState("the proven transaction has another hash")
        return decode(raw_receipt, LedgerReceipt).status, tx_proof.header

    async def events(self, event_filter: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        entry = self.local.subscribe(event_filter)
        try:
            while True:
                yield await entry[1].get()
        finally:
            self.local.unsubscribe(entry)

    async def close(self) -> None:
        """The chain belongs to the test, which closes it."""
