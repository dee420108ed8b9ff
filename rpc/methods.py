"""JSON-RPC methods. Each takes validated params and returns JSON; expected failures are
RpcError with a standard or documented application code. Reads go straight to the store
(final data only); writes go through the node's submission queue.

Reads whose cost grows with the data (blocks, transactions, receipts, proofs, views) run
on one worker thread, never on the consensus loop: decoding and encoding a full block
takes ~60 ms, and a batch of them used to stall consensus for seconds. The thread holds
the GIL at most a switch interval (5 ms) at a time, LMDB gives it a consistent read
transaction, and final data never changes under it; it touches no cache (the loop does).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import rlp

from chain import Block, DecodeError, InvalidTransaction, Transaction, TxReason, UnknownBlock, decode
from chain.epochs import GOVERNANCE, Epoch
from chain.errors import BlockPruned
from chain.proofs import Proof, prove_receipt, prove_state, prove_transaction
from rpc import budget
from rpc.config import LOG_LEVELS
from rpc.encoding import (
    block_json,
    hex_bytes,
    parse_hex,
    receipt_json,
    transaction_json,
    value_from_json,
    value_to_json,
)
from rpc.errors import (
    CONTRACT_ERROR,
    LIMIT_EXCEEDED,
    NOT_FOUND,
    TX_REJECTED,
    RpcError,
    invalid_params,
    pruned_error,
)
from rpc.subscriptions import WaitersFull
from vm import BadArguments, ContractError
from vm.contract import type_name

if TYPE_CHECKING:
    from rpc.server import RpcServer

Handler = Callable[..., Awaitable[Any]]
FINAL_BLOCKS_CACHED = 16  # decoded final blocks kept for receipts and chain_getBlock
# One thread: the GIL lets one run at a time anyway, and queued reads wait off the loop.
READ_THREADS = 1
FULL_BLOCK_JSON_OVERHEAD = 2048  # header fields and certificate beside 2 hex chars per byte
READ = TypeVar("READ")
log = logging.getLogger("gridchain.rpc")


class Methods:
    """The method table; `names` lists what `dispatch` accepts."""

    def __init__(self, server: RpcServer) -> None:
        self.server = server
        self.node = server.node
        # Decoding a 2,000-transaction block costs ~40 ms; final blocks never change, so the
        # recent ones are kept decoded (primed as they become final) for tx_receipt and
        # chain_getBlock instead of being decoded again on every call.
        self._final_blocks: OrderedDict[int, Block] = OrderedDict()
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="rpc-read")
        self.node.final_listeners.append(lambda executed: self._remember(executed.block))
        self.table: dict[str, Handler] = {
            "chain_status": self.chain_status,
            "chain_getBlock": self.chain_get_block,
            "chain_getBlockReceipts": self.chain_get_block_receipts,
            "chain_genesis": self.chain_genesis,
            "account_get": self.account_get,
            "tx_send": self.tx_send,
            "tx_get": self.tx_get,
            "tx_receipt": self.tx_receipt,
            "proof_tx": self.proof_tx,
            "proof_receipt": self.proof_receipt,
            "proof_state": self.proof_state,
            "contract_call": self.contract_call,
            "contract_list": self.contract_list,
            "snapshot_list": self.snapshot_list,
            "governance_epochs": self.governance_epochs,
            "governance_set": self.governance_set,
            "governance_proposals": self.governance_proposals,
            "governance_propose": self.governance_propose,
            "governance_vote": self.governance_vote,
            "consensus_faults": self.consensus_faults,
        }
        # Served only on the operator listener, each under a token permitting it (rpc/auth.py).
        self.operator_table: dict[str, Handler] = {
            "admin_nodeInfo": self.admin_node_info,
            "admin_peers": self.admin_peers,
            "admin_logLevel": self.admin_log_level,
            "admin_setLogLevel": self.admin_set_log_level,
        }

    def close(self) -> None:
        self._reads.shutdown(wait=False, cancel_futures=True)

    async def _off_loop(self, work: Callable[[], READ]) -> READ:
        def guarded() -> READ:
            with self.node.store.reading():
                return work()

        return await asyncio.get_running_loop().run_in_executor(self._reads, guarded)

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
            "baseHeight": node.store.base_height(),
            "view": status.view if status else None,
            "primary": node.bookkeeper_name(status.primary) if status else None,
            "consensusState": status.state if status else "observer",
            "bookkeepers": [{"index": i, "name": node.bookkeeper_name(i), "publicKey": hex_bytes(key)}
                            for i, key in enumerate(node.bookkeepers)],
            "t": node.epoch.t,
            "epoch": node.epoch.start,
            "peers": sorted(node.peer_name(p) for p in node.network.connected_peers()),
            "syncing": not synced and reason == "catching up",
            "mempool": len(node.mempool),
        }

    async def chain_get_block(self, block: Any = "latest", full: bool = False) -> dict[str, Any] | None:
        chain = self.node.chain
        if not isinstance(full, bool):
            raise invalid_params("full must be a boolean")
        try:
            if block == "latest":
                height = chain.height
            elif isinstance(block, int) and not isinstance(block, bool):
                if block < 0:
                    raise invalid_params("block number must be >= 0")
                if block > chain.height:
                    return None
                height = block
            elif isinstance(block, str) and block.startswith("0x"):
                height = chain.store.height_of(parse_hex(block, "block hash", 32))
            else:
                raise invalid_params('block is a number, a 0x hash or "latest"')
        except UnknownBlock:
            return None
        try:
            chain.store.check_held(height)
        except BlockPruned as exc:
            raise pruned_error(exc) from exc
        recent = self._final_blocks.get(height)
        if recent is not None and not full:
            # Hashes of a block decoded already (cached on its transactions): a client that
            # follows the chain (every explorer, bench.load's watcher) costs milliseconds.
            return block_json(recent, full)
        raw = chain.store.raw_block(height)  # a copy out of the map: ~1 ms for 2 MiB
        if raw is None:
            return None
        if full:  # reserve before the work: what does not fit is never decoded
            budget.current.get().reserve(2 * len(raw) + FULL_BLOCK_JSON_OVERHEAD)
        return await self._off_loop(lambda: block_json(recent or decode(raw, Block), full))

    async def chain_get_block_receipts(self, block: Any) -> list[dict[str, Any]] | None:
        """Every receipt of a final block in order, the end-of-block receipt (policy hooks;
        `transactionHash` null) last: what an indexer needs that tx_receipt cannot reach."""
        if not isinstance(block, int) or isinstance(block, bool) or block < 0:
            raise invalid_params("block number must be an integer >= 0")
        chain = self.node.chain
        if block > chain.height:
            return None
        cached = self._final_blocks.get(block)

        def read() -> list[dict[str, Any]]:
            found = cached if cached is not None else chain.block(block)
            receipts = []
            # the genesis block has no receipts; every later one ends with the end-of-block one
            count = len(found.transactions) + 1 if block > 0 else 0
            for index in range(count):
                tx_hash = hex_bytes(found.transactions[index].hash) if index < len(found.transactions) else None
                receipts.append({**receipt_json(chain.receipt_at(found.header, index)),
                                 "transactionHash": tx_hash, "blockNumber": block, "index": index})
            return receipts

        try:
            return await self._off_loop(read)
        except BlockPruned as exc:
            raise pruned_error(exc) from exc
        except UnknownBlock as exc:  # the base block of a node that joined by snapshot
            raise RpcError(NOT_FOUND, str(exc)) from exc

    async def chain_genesis(self) -> dict[str, Any]:
        """The genesis document as the node read it: chain id, t, bookkeepers, time and the
        contracts' parameters (the members and devices admitted at genesis emit no event)."""
        genesis = self.node.genesis
        return {"chainId": genesis.chain_id, "t": genesis.t, "timestampMs": genesis.timestamp_ms,
                "bookkeepers": [{"index": i, "name": b.name, "publicKey": hex_bytes(b.public_key),
                                 "address": hex_bytes(b.address)} for i, b in enumerate(genesis.bookkeepers)],
                "contracts": genesis.contracts}

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
            raise RpcError(TX_REJECTED, "transaction rejected",
                           {"reason": TxReason.MALFORMED, "detail": str(exc)}) from exc
        except InvalidTransaction as exc:
            raise RpcError(TX_REJECTED, "transaction rejected",
                           {"reason": exc.reason, "detail": exc.detail}) from exc
        return hex_bytes(tx.hash)

    async def tx_get(self, tx_hash: str) -> dict[str, Any] | None:
        digest = parse_hex(tx_hash, "hash", 32)
        pending = self.node.mempool.get(digest)
        if pending is not None:
            return {**transaction_json(pending), "status": "pending"}
        return await self._off_loop(lambda: self._final_transaction(digest))

    def _final_transaction(self, digest: bytes) -> dict[str, Any] | None:
        try:
            location = self.node.chain.transaction(digest)
        except BlockPruned as exc:
            raise pruned_error(exc) from exc
        except UnknownBlock:
            return None
        return {**transaction_json(location.tx), "status": "final", "blockNumber": location.height,
                "index": location.index}

    async def tx_receipt(self, tx_hash: str, wait_ms: int = 0) -> dict[str, Any] | None:
        """The receipt once the transaction's block is final; `wait_ms` waits for it."""
        digest = parse_hex(tx_hash, "hash", 32)
        if not isinstance(wait_ms, int) or wait_ms < 0:
            raise invalid_params("wait_ms must be a non-negative integer")
        wait_ms = min(wait_ms, self.node.config.rpc.receipt_wait_ms_max)
        found = await self._receipt(digest)
        if found is None and wait_ms:
            try:
                await asyncio.wait_for(self.server.receipt_waiters.wait(digest), wait_ms / 1000)
            except TimeoutError:
                return None
            except WaitersFull as exc:
                raise limit_error("receipt_waiters_max", str(exc)) from exc
            found = await self._receipt(digest)
        return found

    async def _receipt(self, digest: bytes) -> dict[str, Any] | None:
        chain = self.node.chain
        try:
            height, index = chain.store.transaction_location(digest)
        except UnknownBlock:
            return None
        cached = self._final_blocks.get(height)

        def read() -> tuple[Block, dict[str, Any]]:
            block = cached if cached is not None else chain.block(height)
            receipt = chain.receipt_at(block.header, index)
            return block, {**receipt_json(receipt), "transactionHash": hex_bytes(digest),
                           "blockNumber": height, "blockHash": hex_bytes(block.hash), "index": index}

        try:
            block, found = await self._off_loop(read)
        except BlockPruned as exc:
            raise pruned_error(exc) from exc
        except UnknownBlock:
            return None
        if cached is None:
            self._remember(block)
        return found

    def _remember(self, block: Block) -> None:
        self._final_blocks[block.number] = block
        while len(self._final_blocks) > FINAL_BLOCKS_CACHED:
            self._final_blocks.popitem(last=False)

    # proofs -------------------------------------------------------------------------------
    async def proof_tx(self, tx_hash: str) -> dict[str, Any]:
        digest = parse_hex(tx_hash, "hash", 32)
        return await self._proof(lambda: prove_transaction(self.node.chain, digest))

    async def proof_receipt(self, tx_hash: str) -> dict[str, Any]:
        digest = parse_hex(tx_hash, "hash", 32)
        return await self._proof(lambda: prove_receipt(self.node.chain, digest))

    async def proof_state(self, key: str, height: int | None = None) -> dict[str, Any]:
        if height is not None and (not isinstance(height, int) or isinstance(height, bool)
                                   or not 0 <= height <= self.node.chain.height):
            raise invalid_params("height out of range")
        state_key = parse_hex(key, "key")
        return await self._proof(lambda: prove_state(self.node.chain, state_key, height))

    async def _proof(self, make: Callable[[], Proof]) -> dict[str, Any]:
        try:
            proof = await self._off_loop(make)
        except BlockPruned as exc:
            raise pruned_error(exc) from exc
        except UnknownBlock as exc:
            raise RpcError(NOT_FOUND, str(exc)) from exc
        return {"blockNumber": proof.header.number, "blockHash": hex_bytes(proof.header.hash),
                "rawHeader": hex_bytes(rlp.encode(proof.header)), "kind": proof.kind,
                "root": hex_bytes(proof.root), "key": hex_bytes(proof.key), "value": hex_bytes(proof.value),
                "proof": [hex_bytes(rlp.encode(node)) for node in proof.nodes]}

    # snapshots ----------------------------------------------------------------------------
    async def snapshot_list(self) -> dict[str, Any]:
        """The snapshots this node serves (newest first), its base height, and how far a
        restore of its own has come (null when it is not joining by snapshot)."""
        node = self.node
        return {
            "baseHeight": node.store.base_height(),
            "intervalBlocks": node.config.snapshot.interval_blocks,
            "snapshots": [{"height": m.height, "blockHash": hex_bytes(m.block_hash),
                           "stateRoot": hex_bytes(m.state_root), "chunks": m.chunks, "nodes": m.nodes,
                           "bytes": m.bytes, "walkParts": m.walk}
                          for m in node.snapshots.manifests()],
            "restore": node.state_sync.progress() if node.state_sync is not None else None,
        }

    # contracts ----------------------------------------------------------------------------
    async def contract_call(self, contract: str, method: str, args: list[Any] | None = None) -> Any:
        engine = self.node.chain.engine
        address = self._contract_address(contract)
        if not isinstance(method, str):
            raise invalid_params("method must be a string")
        if args is not None and not isinstance(args, list):
            raise invalid_params("args must be an array")
        values = value_from_json(args or [])
        assert isinstance(values, list)
        chain = self.node.chain
        state, env = chain.state(), chain.view_env()  # the head as of the call, not as of the thread
        time_ms_max = self.node.config.rpc.view_ms_max
        try:
            result = await self._off_loop(
                lambda: engine.call_view(state, address, method, values, env, time_ms_max=time_ms_max))
        except BadArguments as exc:
            raise invalid_params(str(exc)) from exc
        except ContractError as exc:
            raise RpcError(CONTRACT_ERROR, str(exc), {"reason": exc.reason}) from exc
        return value_to_json(result) if result is not None else None

    # consensus ----------------------------------------------------------------------------
    async def consensus_faults(self) -> list[dict[str, Any]]:
        """Bookkeepers proven faulty (XFT §4.4 fault detection), oldest first: kind
        (state-loss or fork), the accused's index and key, where the evidence is, whether this
        node found it or checked a forwarded proof, and the proof's fields."""
        return list(self.node.consensus_faults)

    # governance ---------------------------------------------------------------------------
    async def governance_epochs(self) -> list[dict[str, Any]]:
        """The bookkeeper set by height: every epoch of the schedule (chain/epochs.py)."""
        return [_epoch_json(epoch) for epoch in self.node.chain.epochs()]

    async def governance_set(self, height: int | None = None) -> dict[str, Any]:
        """The set that certifies `height` (default: the next block's), as far as the head's
        state knows (heights up to head + activation_distance)."""
        chain = self.node.chain
        if height is None:
            height = chain.height + 1
        if type(height) is not int or height < 0:
            raise invalid_params("height must be a non-negative integer")
        return _epoch_json(chain.epoch_at(height))

    async def governance_proposals(self) -> Any:
        """Pending set changes with their voters (the governance contract's `proposals`)."""
        return await self.contract_call("governance", "proposals")

    async def governance_propose(self, raw: str, wait_ms: int = 0) -> dict[str, Any]:
        """Submit a signed `governance.propose` transaction (signed by the client: this node
        never holds a voter's key); with `wait_ms`, wait for its receipt, whose events name
        the proposal id (Proposed, Voted, and Accepted if the proposer's vote decided it)."""
        return await self._governance_call(raw, "propose", wait_ms)

    async def governance_vote(self, raw: str, wait_ms: int = 0) -> dict[str, Any]:
        """Submit a signed `governance.vote` transaction; with `wait_ms`, wait for its receipt
        (Voted, and Accepted with the new set's first height if this vote decided it)."""
        return await self._governance_call(raw, "vote", wait_ms)

    async def _governance_call(self, raw: str, method: str, wait_ms: int) -> dict[str, Any]:
        """tx_send for one governance method only: anything else is refused before it is
        admitted (a wrong call here is a client's mistake, not a transaction to run)."""
        data = parse_hex(raw, "rawTx")
        try:
            tx = decode(data, Transaction)
        except DecodeError as exc:
            raise RpcError(TX_REJECTED, "transaction rejected",
                           {"reason": TxReason.MALFORMED, "detail": str(exc)}) from exc
        if tx.to != GOVERNANCE or tx.method != method.encode():
            raise invalid_params(f"governance_{method} takes a signed call of governance.{method}, "
                                 f"not of {tx.method.decode(errors='replace')!r} at 0x{tx.to.hex()}")
        tx_hash = await self.tx_send(raw)
        receipt = await self.tx_receipt(tx_hash, wait_ms) if wait_ms else None
        return {"txHash": tx_hash, "receipt": receipt}

    async def contract_list(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "address": hex_bytes(c.address),
                 "methods": [{"name": name, "kind": spec.kind,
                              "params": [[p, type_name(t)] for p, t in spec.parameters]}
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


    # operator -----------------------------------------------------------------------------
    async def admin_node_info(self) -> dict[str, Any]:
        node, config = self.node, self.node.config
        consensus = node.consensus_config
        return {"name": config.name, "publicKey": hex_bytes(node.key.public_key), "chainId": node.genesis.chain_id,
                "role": "bookkeeper" if node.index is not None else "observer", "index": node.index,
                "p2p": f"{config.p2p_host}:{node.network.listen_port}",
                "rpc": self.server.url("public"), "operator": self.server.url("operator"),
                "tls": config.rpc.tls_cert_file is not None, "publicAuth": config.rpc.public_auth,
                "consensus": {"deltaMs": consensus.delta_ms, "commitTimeoutMs": consensus.commit_timeout_ms,
                              "viewChangeTimeoutMs": consensus.view_change_timeout_ms,
                              "retransmitMs": consensus.retransmit_ms},
                "logLevel": logging.getLevelName(logging.getLogger().level).lower()}

    async def admin_peers(self) -> list[dict[str, Any]]:
        """Every configured peer, connected or not, and any other connected one (observers)."""
        node = self.node
        connected = node.network.peer_addresses()
        configured = {p.public_key: p for p in node.config.peers}
        keys = sorted(set(configured) | set(connected), key=node.peer_name)
        return [{"name": node.peer_name(key), "publicKey": hex_bytes(key),
                 "configured": f"{configured[key].host}:{configured[key].port}" if key in configured else None,
                 "connected": key in connected,
                 "remote": f"{connected[key][0]}:{connected[key][1]}" if key in connected else None,
                 "height": node.peer_heights.get(key)}
                for key in keys]

    async def admin_log_level(self) -> str:
        return logging.getLevelName(logging.getLogger().level).lower()

    async def admin_set_log_level(self, level: str) -> str:
        """Sets the node's log level until it restarts; returns the previous one."""
        if level not in LOG_LEVELS:
            raise invalid_params(f"level must be one of {', '.join(LOG_LEVELS)}")
        previous = await self.admin_log_level()
        logging.getLogger().setLevel(level.upper())
        log.warning("log level %s -> %s by an operator call", previous, level)
        return previous


@functools.cache
def _epoch_json(epoch: Epoch) -> dict[str, Any]:
    return {"start": epoch.start, "t": epoch.t, "n": epoch.n, "bookkeepers": [hex_bytes(key) for key in epoch.keys]}


def _signature(handler: Handler) -> inspect.Signature:
    """inspect.signature costs ~15 us; the method table is fixed, so once per method."""
    return inspect.signature(handler)


def limit_error(limit: str, detail: str) -> RpcError:
    return RpcError(LIMIT_EXCEEDED, detail, {"limit": limit})
