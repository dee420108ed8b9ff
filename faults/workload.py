"""Concurrent clients and the status sampler.

Each client owns one funded account (so clients never race each other's nonces) and, in a
closed loop, signs a token transfer with a unique amount, sends it to a node picked at
random, and waits for its final receipt, reading from any node. Every step lands in the
History as an invoke and one completion; nothing is retried under the same id, so a lost
acknowledgement cannot hide. Loops are bounded by an op count and a deadline and stop
when asked.
"""

from __future__ import annotations

import asyncio
import bisect
import random
from typing import Any

import rlp

from chain import Transaction
from client import ClientError, NodeUnavailable, Receipt, RpcCallError, from_hex
from faults.cluster import FaultCluster
from faults.history import ADMITTED_NO_RECEIPT, FAIL, INFO, OK, History, Op, Sample

GAS_LIMIT = 1_000_000
SEND_TIMEOUT_S = 5


def cause(exc: BaseException) -> str:
    """What failed underneath a NodeUnavailable (ClientConnectorError, TimeoutError, ...)."""
    return type(exc.__cause__ or exc).__name__


async def chain_facts(cluster: FaultCluster) -> tuple[int, bytes]:
    """(chain id, token contract address), from any node that answers."""
    for _ in range(50):
        for i in range(cluster.nodes):
            try:
                status = await cluster.call(i, "chain_status")
                listing = await cluster.call(i, "contract_list")
            except ClientError:
                continue
            token = next(c["address"] for c in listing if c["name"] == "token")
            return status["chainId"], from_hex(token)
        await asyncio.sleep(0.2)
    raise RuntimeError("no node answered chain_status")


class Workload:
    def __init__(self, cluster: FaultCluster, history: History, rng: random.Random, clients: int,
                 chain_id: int, token: bytes, receipt_timeout_s: float = 10, ops_max: int = 5_000,
                 think_ms: int = 20, targets: list[int] | None = None) -> None:
        assert clients <= len(cluster.accounts) - 4, "keep a few accounts for recipients and races"
        self.cluster = cluster
        self.history = history
        self.clients = clients
        self.chain_id = chain_id
        self.token = token
        self.receipt_timeout_s = receipt_timeout_s
        self.ops_max = ops_max
        self.think_ms = think_ms
        self.targets = targets if targets is not None else list(range(cluster.nodes))
        self.recipient = cluster.accounts[-1].address
        self._rngs = [random.Random(rng.getrandbits(64)) for _ in range(clients)]
        self._stop = asyncio.Event()
        self._going = asyncio.Event()  # cleared while a schedule holds the load (Ctx.quiesce)
        self._going.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._amounts = iter(range(1, 10**9))

    def start(self, deadline_s: float) -> None:
        self._tasks = [asyncio.ensure_future(self._client(c, deadline_s)) for c in range(self.clients)]

    def hold(self) -> None:
        """Clients start no new op until `resume` (the op in flight runs to its end)."""
        self._going.clear()

    def resume(self) -> None:
        self._going.set()

    async def stop(self) -> None:
        """Ask clients to stop after their current op; wait for them (bounded)."""
        self._stop.set()
        self._going.set()  # a held client wakes to see the stop
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=self.receipt_timeout_s + SEND_TIMEOUT_S + 5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for task in done:
                if (error := task.exception()) is not None:
                    raise error

    async def _client(self, c: int, deadline_s: float) -> None:
        rng = self._rngs[c]
        key = self.cluster.accounts[c]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        nonce: int | None = None
        for _ in range(self.ops_max // self.clients + 1):
            await self._going.wait()
            if self._stop.is_set() or loop.time() > deadline:
                return
            node = rng.choice(self.targets)
            if nonce is None:
                nonce = await self._pending_nonce(node, key.address)
                if nonce is None:
                    await self._pause(0.2)
                    continue
            tx = Transaction.create(key, chain_id=self.chain_id, nonce=nonce, to=self.token, method="transfer",
                                    args=[self.recipient, next(self._amounts)], gas_limit=GAS_LIMIT)
            op = self.history.invoke(c, node, "0x" + tx.hash.hex(), "0x" + key.address.hex(), nonce)
            nonce = await self._one(op, tx, node, rng)
            await self._pause(rng.uniform(0, self.think_ms) / 1000)

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _pending_nonce(self, node: int, address: bytes) -> int | None:
        try:
            account = await self.cluster.call(node, "account_get", "0x" + address.hex(), timeout_s=SEND_TIMEOUT_S)
        except ClientError:
            return None
        return int(account["pendingNonce"])

    async def _one(self, op: Op, tx: Transaction, node: int, rng: random.Random) -> int | None:
        """Send and await one transaction; return the next nonce to use (None: ask a node)."""
        try:
            await self.cluster.call(node, "tx_send", "0x" + rlp.encode(tx).hex(), timeout_s=SEND_TIMEOUT_S)
        except RpcCallError as exc:
            self.history.complete(op, FAIL, f"rejected: {exc.reason or exc}")
            return None
        except NodeUnavailable as exc:
            if exc.connect_failed:  # nothing reached the node
                self.history.complete(op, FAIL, f"refused: {cause(exc)}")
                return int(tx.nonce)
            self.history.complete(op, INFO, f"send: {cause(exc)}")
            return None
        receipt = await self._await_receipt(op.tx, node, rng)
        if receipt is None:
            self.history.complete(op, INFO, ADMITTED_NO_RECEIPT)
            return None
        self.history.complete(op, OK, f"status {receipt.status}", receipt.block_number, receipt.block_hash_hex)
        return int(tx.nonce) + 1

    async def _await_receipt(self, tx_hash: str, node: int, rng: random.Random) -> Receipt | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.receipt_timeout_s
        while (left := deadline - loop.time()) > 0:
            try:
                receipt = await self.cluster.receipt(node, tx_hash, int(min(left, 1.0) * 1000),
                                                     timeout_s=min(left, 1.0) + 2)
                if receipt is not None:
                    return receipt
            except ClientError:
                await asyncio.sleep(0.1)
                node = rng.choice(self.targets)  # that node is gone or stuck: ask another
        return None


class Sampler:
    """Polls chain_status of every node every `interval_s` into History.samples."""

    def __init__(self, cluster: FaultCluster, history: History, interval_s: float = 0.25) -> None:
        self.cluster = cluster
        self.history = history
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def sample_once(self) -> None:
        async def one(i: int) -> None:
            if not self.cluster.is_running(i) or i in self.cluster.paused:
                return
            status = await self.cluster.status(i, timeout_s=1)
            if status is not None:
                self.history.samples.append(Sample(self.history.now(), i, status["height"], status["headHash"],
                                                   status["view"], status["primary"]))
        await asyncio.gather(*(one(i) for i in range(self.cluster.nodes)))

    async def _run(self) -> None:
        while True:
            await self.sample_once()
            await asyncio.sleep(self.interval_s)


RATE_TICK_S = 0.05  # the open-loop load sends one batch per tick
RATE_SENDERS = 32  # accounts of the open-loop load (each keeps its own nonce sequence)
RECEIPT_BATCH = 100  # receipts asked per request when the load is resolved


class RateLoad:
    """Open-loop token transfers at `rate` tx/s (a fault run at a real load, not the closed
    loop's few dozen per second). Each tick sends one JSON-RPC batch to a random node; every
    transfer is an op in the History like the clients'. Receipts are not awaited one by one:
    after the run settles, `resolve` reads them in batches, and an op completes OK in the
    block its receipt names, at the first moment a sampled node reached that height, or as
    admitted-without-receipt, which the checker's stranded and lost rules then judge."""

    def __init__(self, cluster: FaultCluster, history: History, rng: random.Random, rate: float,
                 senders: list[Any], chain_id: int, token: bytes, recipient: bytes) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = rng
        self.rate = rate
        self.senders = senders
        self.chain_id = chain_id
        self.token = token
        self.recipient = recipient
        self.acked: list[Op] = []
        self.lag_s_max = 0.0
        self._nonces: dict[int, int | None] = dict.fromkeys(range(len(senders)))
        self._stop = asyncio.Event()
        self.held = False  # while a schedule holds the load, the ticks' transactions are not sent
        self._task: asyncio.Task[None] | None = None
        self._amounts = iter(range(10**9, 2 * 10**9))  # apart from the clients' amounts

    def start(self, deadline_s: float) -> None:
        self._task = asyncio.ensure_future(self._run(deadline_s))

    def hold(self) -> None:
        self.held = True

    def resume(self) -> None:
        self.held = False

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, deadline_s: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        turn = 0
        while not self._stop.is_set() and loop.time() - started < deadline_s:
            turn += 1
            due = int(self.rate * turn * RATE_TICK_S) - sent
            if due > 0:
                if not self.held:  # a held tick's share is skipped, not sent in a burst later
                    await self._send_batch(due)
                sent += due
            lag = loop.time() - (started + turn * RATE_TICK_S)
            self.lag_s_max = max(self.lag_s_max, lag)
            await asyncio.sleep(max(0.0, -lag))

    async def _send_batch(self, count: int) -> None:
        node = self.rng.randrange(self.cluster.nodes)
        if not self.cluster.is_running(node) or node in self.cluster.paused:
            node = self.rng.randrange(self.cluster.nodes)
        ops: list[tuple[Op, Transaction, int]] = []
        for _ in range(count):
            s = self.rng.randrange(len(self.senders))
            nonce = self._nonces[s]
            if nonce is None:
                nonce = await self._pending_nonce(s)
                if nonce is None:
                    continue
            key = self.senders[s]
            tx = Transaction.create(key, chain_id=self.chain_id, nonce=nonce, to=self.token, method="transfer",
                                    args=[self.recipient, next(self._amounts)], gas_limit=GAS_LIMIT)
            self._nonces[s] = nonce + 1
            ops.append((self.history.invoke(-2, node, "0x" + tx.hash.hex(), "0x" + key.address.hex(), nonce), tx, s))
        if not ops:
            return
        try:
            replies = await self.cluster.batch(node, [("tx_send", ["0x" + rlp.encode(tx).hex()])
                                                              for _, tx, _ in ops], timeout_s=SEND_TIMEOUT_S)
        except ClientError as exc:
            for op, _, s in ops:
                self.history.complete(op, INFO, f"send: {cause(exc)}")
                self._nonces[s] = None  # ask a node for the nonce again
            return
        for (op, _, s), reply in zip(ops, replies, strict=True):
            if reply.error is not None:
                self.history.complete(op, FAIL, f"rejected: {reply.reason or reply.error.message}")
                self._nonces[s] = None
            else:
                self.acked.append(op)

    async def _pending_nonce(self, s: int) -> int | None:
        for i in self.rng.sample(range(self.cluster.nodes), self.cluster.nodes):
            try:
                account = await self.cluster.call(i, "account_get", "0x" + self.senders[s].address.hex(),
                                                  timeout_s=SEND_TIMEOUT_S)
                return int(account["pendingNonce"])
            except ClientError:
                continue
        return None

    async def resolve(self, node: int) -> None:
        """Complete every acknowledged op from its final receipt, read from `node`."""
        reached = self._first_reached()
        for start in range(0, len(self.acked), RECEIPT_BATCH):
            chunk = self.acked[start:start + RECEIPT_BATCH]
            replies = await self.cluster.batch(node, [("tx_receipt", [op.tx, 0]) for op in chunk], timeout_s=30)
            for op, reply in zip(chunk, replies, strict=True):
                if reply.result is None:
                    self.history.complete(op, INFO, ADMITTED_NO_RECEIPT)
                    continue
                receipt = Receipt.from_json(reply.result)
                self.history.complete(op, OK, f"status {receipt.status}", receipt.block_number,
                                      receipt.block_hash_hex)
                seen = bisect.bisect_left(reached, (receipt.block_number, -1.0))
                op.complete = max(op.invoke, reached[seen][1] if seen < len(reached) else self.history.now())

    def _first_reached(self) -> list[tuple[int, float]]:
        """(height, when a sampled node first reported it or more), heights rising: the
        commit time of a block, within a sample; one pass over the samples, not one per op."""
        reached: list[tuple[int, float]] = []
        for sample in sorted(self.history.samples, key=lambda s: s.time):
            if not reached or sample.height > reached[-1][0]:
                reached.append((sample.height, sample.time))
        return reached
