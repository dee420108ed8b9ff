"""JSON-RPC methods. Each takes validated params and returns JSON; expected failures are
RpcError with a standard or documented application code. Reads go straight to the store
(final data only); writes go through the node's submission queue."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import rlp

from chain.errors import DecodeError, InvalidTransaction, UnknownBlock
from chain.proofs import Proof, prove_receipt, prove_state, prove_transaction
from chain.types import Block, Transaction, decode
from rpc.encoding import (
    block_json,
    hex_bytes,
    parse_hex,
    receipt_json,
    transaction_json,
    value_from_json,
    value_to_json,
)
from rpc.errors import CONTRACT_ERROR, LIMIT_EXCEEDED, NOT_FOUND, TX_REJECTED, RpcError, invalid_params
from rpc.subscriptions import WaitersFull
from vm.errors import ContractError

if TYPE_CHECKING:
    from rpc.server import RpcServer

Handler = Callable[..., Awaitable[Any]]
FINAL_BLOCKS_CACHED = 16  # decoded final blocks kept for receipts and chain_getBlock


class Methods:
    """The method table; `names` lists what `dispatch` accepts."""

    def __init__(self, server: RpcServer) -> None:
        self.server = server
        self.node = server.node
        # Decoding a 2,000-transaction block costs ~40 ms; final blocks never change, so the
        # recent ones are kept decoded (primed as they become final) for tx_receipt and
        # chain_getBlock instead of being decoded again on every call.
        self._final_blocks: OrderedDict[int, Block] = OrderedDict()
        self.node.final_listeners.append(lambda executed: self._remember(executed.block))
        self.table: dict[str, Handler] = {
            "chain_status": self.chain_status,
            "chain_getBlock": self.chain_get_block,
            "account_get": self.account_get,
            "tx_send": self.tx_send,
            "tx_get": self.tx_get,
            "tx_receipt": self.tx_receipt,
            "proof_tx": self.proof_tx,
            "proof_receipt": self.proof_receipt,
            "proof_state": self.proof_state,
            "contract_call": self.contract_call,
            "contract_list": self.contract_list,
        }

    async def dispatch(self, handler: Handler, params: Any) -> Any:
        signature = _signature(handler)
        try:
            if isinstance(params, list):
                bound = signature.bind(*params)
            elif isinstance(params, dict):
                bound = signature.bind(**params)
            else:
                raise invalid_params("params must be an array or an object")
        except TypeError as exc:
            raise invalid_params(str(exc)) from exc
        return await handler(*bound.args, **bound.kwargs)

    # chain ------------------------------------------------------------------------------
    async def chain_status(self) -> dict[str, Any]:
        node = self.node
        status = node.replica.status if node.replica is not None else None
        synced, reason = node.is_synced()
        return {
            "chainId": node.genesis.chain_id,
            "name": node.config.name,
            "height": node.chain.height,
            "headHash": hex_bytes(node.chain.head.hash),
            "view": status.view if status else None,
            "primary": node.genesis.bookkeepers[status.primary].name if status else None,
            "consensusState": status.state if status else "observer",
            "bookkeepers": [{"index": i, "name": b.name, "publicKey": hex_bytes(b.public_key)}
                            for i, b in enumerate(node.genesis.bookkeepers)],
            "t": node.genesis.t,
            "peers": sorted(node.peer_name(p) for p in node.network.connected_peers()),
            "syncing": not synced and reason == "catching up",
            "mempool": len(node.mempool),
        }

    async def chain_get_block(self, block: Any = "latest", full: bool = False) -> dict[str, Any] | None:
        chain = self.node.chain
        try:
            if block == "latest":
                found = chain.head
            elif isinstance(block, int) and not isinstance(block, bool):
                if block < 0:
                    raise invalid_params("block number must be >= 0")
                if block > chain.height:
                    return None
                found = self._final_block(block)
            elif isinstance(block, str) and block.startswith("0x"):
                found = chain.block_by_hash(parse_hex(block, "block hash", 32))
            else:
                raise invalid_params('block is a number, a 0x hash or "latest"')
        except UnknownBlock:
            return None
        if not isinstance(full, bool):
            raise invalid_params("full must be a boolean")
        return block_json(found, full)

    async def account_get(self, address: str) -> dict[str, Any]:
        account = self.node.chain.account(parse_hex(address, "address", 20))
        return {"exists": account is not None, "nonce": account.nonce if account else 0,
                "balance": account.balance if account else 0,
                "pendingNonce": self.node.mempool.next_nonce(parse_hex(address, "address", 20),
                                                             account.nonce if account else 0)}

    # transactions -------------------------------------------------------------------------
    async def tx_send(self, raw: str) -> str:
        data = parse_hex(raw, "rawTx")
        try:
            tx = decode(data, Transaction)
            await self.node.submit(tx)
        except DecodeError as exc:
            raise RpcError(TX_REJECTED, "transaction rejected", {"reason": "malformed", "detail": str(exc)}) from exc
        except InvalidTransaction as exc:
            raise RpcError(TX_REJECTED, "transaction rejected",
                           {"reason": exc.reason, "detail": exc.detail}) from exc
        return hex_bytes(tx.hash)

    async def tx_get(self, tx_hash: str) -> dict[str, Any] | None:
        digest = parse_hex(tx_hash, "hash", 32)
        try:
            location = self.node.chain.transaction(digest)
        except UnknownBlock:
            pending = self.node.mempool.get(digest)
            return None if pending is None else {**transaction_json(pending), "status": "pending"}
        return {**transaction_json(location.tx), "status": "final", "blockNumber": location.height,
                "index": location.index}

    async def tx_receipt(self, tx_hash: str, wait_ms: int = 0) -> dict[str, Any] | None:
        """The receipt once the transaction's block is final; `wait_ms` waits for it."""
        digest = parse_hex(tx_hash, "hash", 32)
        if not isinstance(wait_ms, int) or wait_ms < 0:
            raise invalid_params("wait_ms must be a non-negative integer")
        wait_ms = min(wait_ms, self.node.config.rpc.receipt_wait_ms_max)
        found = self._receipt(digest)
        if found is None and wait_ms:
            try:
                await asyncio.wait_for(self.server.receipt_waiters.wait(digest), wait_ms / 1000)
            except TimeoutError:
                return None
            except WaitersFull as exc:
                raise limit_error("receipt_waiters_max", str(exc)) from exc
            found = self._receipt(digest)
        return found

    def _receipt(self, digest: bytes) -> dict[str, Any] | None:
        chain = self.node.chain
        try:
            height, index = chain.store.transaction_location(digest)
            block = self._final_block(height)
            receipt = chain.receipt_at(block.header, index)
        except UnknownBlock:
            return None
        return {**receipt_json(receipt), "transactionHash": hex_bytes(digest),
                "blockNumber": height, "blockHash": hex_bytes(block.hash), "index": index}

    def _final_block(self, height: int) -> Block:
        block = self._final_blocks.get(height)
        if block is None:
            block = self.node.chain.block(height)
            self._remember(block)
        return block

    def _remember(self, block: Block) -> None:
        self._final_blocks[block.number] = block
        while len(self._final_blocks) > FINAL_BLOCKS_CACHED:
            self._final_blocks.popitem(last=False)

    # proofs -------------------------------------------------------------------------------
    async def proof_tx(self, tx_hash: str) -> dict[str, Any]:
        return self._proof(lambda: prove_transaction(self.node.chain, parse_hex(tx_hash, "hash", 32)))

    async def proof_receipt(self, tx_hash: str) -> dict[str, Any]:
        return self._proof(lambda: prove_receipt(self.node.chain, parse_hex(tx_hash, "hash", 32)))

    async def proof_state(self, key: str, height: int | None = None) -> dict[str, Any]:
        if height is not None and (not isinstance(height, int) or not 0 <= height <= self.node.chain.height):
            raise invalid_params("height out of range")
        return self._proof(lambda: prove_state(self.node.chain, parse_hex(key, "key"), height))

    def _proof(self, make: Callable[[], Proof]) -> dict[str, Any]:
        try:
            proof = make()
        except UnknownBlock as exc:
            raise RpcError(NOT_FOUND, str(exc)) from exc
        return {"blockNumber": proof.header.number, "blockHash": hex_bytes(proof.header.hash),
                "rawHeader": hex_bytes(rlp.encode(proof.header)), "kind": proof.kind,
                "root": hex_bytes(proof.root), "key": hex_bytes(proof.key), "value": hex_bytes(proof.value),
                "proof": [hex_bytes(rlp.encode(node)) for node in proof.nodes]}

    # contracts ----------------------------------------------------------------------------
    async def contract_call(self, contract: str, method: str, args: list | None = None) -> Any:
        engine = self.node.chain.engine
        address = self._contract_address(contract)
        if not isinstance(method, str):
            raise invalid_params("method must be a string")
        values = value_from_json(args or [])
        assert isinstance(values, list)
        chain = self.node.chain
        try:
            result = engine.call_view(chain.state(), address, method, values, chain.view_env())
        except ContractError as exc:
            raise RpcError(CONTRACT_ERROR, str(exc), {"reason": exc.reason}) from exc
        return value_to_json(result) if result is not None else None

    async def contract_list(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "address": hex_bytes(c.address),
                 "methods": [{"name": name, "kind": spec.kind,
                              "params": [[p, getattr(t, "__name__", str(t))] for p, t in spec.parameters]}
                             for name, spec in c.methods().items()]}
                for _, c in sorted(self.node.chain.engine.contracts.items())]

    def _contract_address(self, contract: Any) -> bytes:
        if not isinstance(contract, str):
            raise invalid_params("contract is a name or a 0x address")
        if contract.startswith("0x"):
            return parse_hex(contract, "contract", 20)
        found = self.node.chain.engine.by_name.get(contract)
        if found is None:
            raise RpcError(NOT_FOUND, f"no contract named {contract!r}")
        return found.address


@functools.cache
def _signature(handler: Handler) -> inspect.Signature:
    """inspect.signature costs ~15 us; the method table is fixed, so once per method."""
    return inspect.signature(handler)


def limit_error(limit: str, detail: str) -> RpcError:
    return RpcError(LIMIT_EXCEEDED, detail, {"limit": limit})
