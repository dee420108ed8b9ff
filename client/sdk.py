"""The SDK: JSON-RPC (client/rpc.py) with failover across nodes, signed transactions with
local nonce tracking, receipts, contract views, proofs checked locally against a header,
and WebSocket subscriptions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import rlp

from chain import BlockHeader, Transaction, TxReason, Value, decode
from chain.proofs import verify_proof
from client.errors import ProofMismatch, RpcCallError, TransactionFailed, UnknownContract
from client.receipts import Receipt, from_hex, to_json_value
from client.rpc import RpcClient
from crypto import KeyPair, keccak256

DEFAULT_GAS_LIMIT = 5_000_000


class GridClient:
    def __init__(self, urls: list[str] | str, session: aiohttp.ClientSession | None = None,
                 token: str | None = None, ca_file: Path | None = None, local_host: str | None = None) -> None:
        self.rpc = RpcClient([urls] if isinstance(urls, str) else urls, session, token, ca_file,
                             local_host=local_host)
        self._chain_id: int | None = None
        self._nonces: dict[bytes, int] = {}
        self._listing: list[dict[str, Any]] | None = None
        self._addresses: dict[str, bytes] = {}

    async def __aenter__(self) -> GridClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.rpc.close()

    # reads --------------------------------------------------------------------------------
    async def status(self) -> dict[str, Any]:
        status: dict[str, Any] = await self.rpc.call("chain_status")
        return status

    async def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = (await self.status())["chainId"]
        return self._chain_id

    async def block(self, number: int | str = "latest", full: bool = False) -> dict[str, Any] | None:
        block: dict[str, Any] | None = await self.rpc.call("chain_getBlock", number, full)
        return block

    async def snapshots(self) -> dict[str, Any]:
        """snapshot_list: the state snapshots the node serves, its base height, its restore."""
        listing: dict[str, Any] = await self.rpc.call("snapshot_list")
        return listing

    async def account(self, address: bytes) -> dict[str, Any]:
        account: dict[str, Any] = await self.rpc.call("account_get", "0x" + address.hex())
        return account

    async def view(self, contract: str, method: str, args: list[Value] | None = None) -> Any:
        return await self.rpc.call("contract_call", contract, method, [to_json_value(a) for a in args or []])

    async def contracts(self) -> list[dict[str, Any]]:
        """contract_list, fetched once: every contract with its methods, views and their types."""
        if self._listing is None:
            self._listing = await self.rpc.call("contract_list")
        return self._listing

    async def contract_address(self, contract: str | bytes) -> bytes:
        if isinstance(contract, bytes):
            return contract
        if contract.startswith("0x"):
            return from_hex(contract)
        if not self._addresses:
            self._addresses = {c["name"]: from_hex(c["address"]) for c in await self.contracts()}
        if contract not in self._addresses:
            raise UnknownContract(f"no contract named {contract!r}; known: {', '.join(sorted(self._addresses))}")
        return self._addresses[contract]

    # transactions -------------------------------------------------------------------------
    async def build(self, key: KeyPair, contract: str | bytes, method: str, args: list[Value] | None = None,
                    value: int = 0, gas_limit: int = DEFAULT_GAS_LIMIT) -> Transaction:
        """A signed transaction with the sender's next nonce (tracked locally)."""
        nonce = self._nonces.get(key.address)
        if nonce is None:
            nonce = (await self.account(key.address))["pendingNonce"]
        self._nonces[key.address] = nonce + 1
        return Transaction.create(key, chain_id=await self.chain_id(), nonce=nonce,
                                  to=await self.contract_address(contract), method=method, args=args or [],
                                  value=value, gas_limit=gas_limit)

    async def submit(self, tx: Transaction, method: str = "tx_send", *params: Any) -> Any:
        """Send a signed transaction by `method` (tx_send: its hash; governance_propose and
        governance_vote take it too, and more `params`)."""
        try:
            return await self.rpc.call(method, "0x" + rlp.encode(tx).hex(), *params)
        except RpcCallError as exc:
            if exc.reason in (TxReason.NONCE_REPLAY, TxReason.NONCE_GAP, TxReason.NONCE_TAKEN):
                self._nonces.pop(tx.sender_address, None)  # resynchronise on the next build
            raise

    async def send(self, key: KeyPair, contract: str | bytes, method: str, args: list[Value] | None = None,
                   value: int = 0, gas_limit: int = DEFAULT_GAS_LIMIT) -> str:
        tx_hash: str = await self.submit(await self.build(key, contract, method, args, value, gas_limit))
        return tx_hash

    async def receipt(self, tx_hash: str, wait_ms: int = 0) -> Receipt | None:
        """The final receipt (None until the block is final; `wait_ms` waits for it)."""
        found = await self.rpc.call("tx_receipt", tx_hash, wait_ms)
        return Receipt.from_json(found) if found is not None else None

    async def wait_receipt(self, tx_hash: str, timeout_s: float = 30) -> Receipt:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            left_ms = int((deadline - asyncio.get_running_loop().time()) * 1000)
            if left_ms <= 0:
                raise TimeoutError(f"no final receipt for {tx_hash} in {timeout_s}s")
            receipt = await self.receipt(tx_hash, min(left_ms, 10_000))
            if receipt is not None:
                return receipt

    async def transact(self, key: KeyPair, contract: str | bytes, method: str, args: list[Value] | None = None,
                       value: int = 0, gas_limit: int = DEFAULT_GAS_LIMIT, timeout_s: float = 30) -> Receipt:
        """Send and wait for the final receipt; raise TransactionFailed on status 0."""
        tx_hash = await self.send(key, contract, method, args, value, gas_limit)
        receipt = await self.wait_receipt(tx_hash, timeout_s)
        if not receipt.ok:
            raise TransactionFailed(receipt)
        return receipt

    # proofs -------------------------------------------------------------------------------
    async def verified_proof(self, kind: str, subject: str, header_from: GridClient | None = None) -> bytes:
        """Fetch a proof and check it against the block header, fetched from `header_from`
        (another node) when given; return the proven value (b"" for absence)."""
        method = {"transaction": "proof_tx", "receipt": "proof_receipt", "state": "proof_state"}[kind]
        proof = await self.rpc.call(method, subject)
        source = header_from or self
        block = await source.block(proof["blockNumber"])
        if block is None:
            raise ProofMismatch(f"block {proof['blockNumber']} unknown to the header source")
        header = decode(from_hex(block["rawHeader"]), BlockHeader)
        if keccak256(from_hex(block["rawHeader"])) != from_hex(block["hash"]):
            raise ProofMismatch("header does not hash to its block hash")
        nodes = [rlp.decode(from_hex(node)) for node in proof["proof"]]
        value = verify_proof(header, kind, from_hex(proof["key"]), nodes)
        if value != from_hex(proof["value"]):
            raise ProofMismatch("the node's claimed value differs from the proven one")
        return value

    # subscriptions ------------------------------------------------------------------------
    async def subscribe(self, kind: str, event_filter: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield notifications of a newHeads or events subscription until cancelled."""
        session = await self.rpc.session()
        ws_url = self.rpc.url.rstrip("/").replace("http", "ws", 1) + "/ws"  # https -> wss
        async with session.ws_connect(ws_url, headers=self.rpc.headers, ssl=self.rpc.ssl) as ws:
            params: list[Any] = [kind] + ([event_filter] if event_filter else [])
            await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": params})
            reply = await ws.receive_json()
            if "error" in reply:
                error = reply["error"]
                raise RpcCallError(error["code"], error["message"], error.get("data"))
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(message.data)
                if data.get("method") == "subscription":
                    yield data["params"]["result"]

