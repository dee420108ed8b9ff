"""Load benchmark on real node processes: M signed transactions (token transfers, or DSC
operations), signed before the clock starts, sent over JSON-RPC batches by C concurrent
workers spread over the nodes, and followed to finality by watching final blocks.

    python node.py bench --nodes 3 --txs 20000 --concurrency 8 --json OUT [--rate TPS] ...
    python -m bench.load ...   (the same options)

Closed loop (default): every worker sends its next batch as soon as the previous one is
acknowledged; the mempool absorbs the backlog, so this measures the committed throughput
ceiling. Open loop (`--rate`): batches leave on a fixed schedule whatever the replies, and
latency counts from the scheduled time (no coordinated omission).

Latency of a transaction = the moment the client saw it in a final block (chain_getBlock
polled every `POLL_S`) minus the moment it was sent. The SDK's RpcClient (client/rpc.py)
carries the batches: a node that stops answering is skipped for a while and its batch goes
to the next node, and back-pressure is retried after its `Backoff`; "duplicate" and
"nonce-replay" replies mean the network already holds the transaction, so it counts as
acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rlp

from bench.harness import DSC_REQUEST_DEPOSIT, BenchCluster, bench_cluster, cpu_seconds, load_average, machine
from chain import Transaction, TxReason
from client import BACKPRESSURE, Backoff, ClientError, NodeUnavailable, Receipt, RpcClient
from contracts.addresses import DSC, TOKEN
from crypto import KeyPair, keccak256
from runtime.cluster import account_keys

POLL_S = 0.01  # final-block polling period of the watcher
# Back-pressure (client.BACKPRESSURE) is retried until the run's deadline; these a bounded
# number of times (an earlier nonce not yet in, the sender's quota).
RETRY_REASONS = BACKPRESSURE | {TxReason.NONCE_GAP, TxReason.SENDER_FULL}
KNOWN_REASONS = (TxReason.DUPLICATE, TxReason.NONCE_REPLAY)  # the network already has it
NO_NODE_PAUSE_S = 0.2  # no node answered a batch: wait this long before the next try
ATTEMPTS_MAX = 200
NONCE_WINDOW = 48  # transactions per sender: below the mempool's nonce_gap_max (64)
DSC_MESSAGES_MAX = 48  # log_message calls per request: below dsc messages_max (64)
HTTP_TIMEOUT_S = 30
RECEIPT_SAMPLE = 200
RECEIPT_WAIT_MS = 5_000  # the node asked may be a replica still applying the block others saw final
GAS_LIMIT = 1_000_000
DEFAULT_WINDOW = 4_000  # closed loop: two full blocks in flight keep the primary busy without a flood
KINDS = ("transfer", "dsc")
CDF_POINTS = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 100)


@dataclass
class LoadSpec:
    txs: int
    concurrency: int = 8
    batch: int = 100  # transactions per JSON-RPC batch request (rpc batch_max is 100)
    rate: float | None = None  # open loop: transactions per second
    timeout_s: float = 300  # the whole timed part, sending and waiting for finality
    window: int | None = None  # closed loop: at most this many sent but not yet final
    progress: bool = True


@dataclass
class Tracked:
    raw: str
    sent: float = 0.0
    acked: bool = False
    acked_at: float = 0.0
    committed: float = 0.0
    attempts: int = 0


@dataclass
class LoadRun:
    urls: list[str]
    spec: LoadSpec
    txs: dict[str, Tracked]
    order: list[str]
    node_pids: list[int] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    views: list[int | None] = field(default_factory=lambda: [None, None])  # at the start and the end
    pushed_back: int = 0  # batch attempts the node answered with back-pressure (mempool-full, node-busy)
    height: int = 0
    blocks: list[tuple[float, int, int]] = field(default_factory=list)  # (seen, height, txs)
    sending_done: bool = False
    sent_all_at: float = 0.0
    sent_n: int = 0
    committed_n: int = 0
    started: float = 0.0
    send_lag_s: float = 0.0
    client: RpcClient | None = None  # while `run` runs

    # sending ------------------------------------------------------------------------------
    async def send_batch(self, client: RpcClient, worker: int, hashes: list[str],
                         sent_at: float | None = None) -> None:
        """Send `hashes` until each is acknowledged, refused for good, or out of attempts."""
        now = time.monotonic()
        for h in hashes:
            if not self.txs[h].sent:
                self.txs[h].sent = sent_at or now
                self.sent_n += 1
        pending = hashes
        deadline = self.started + self.spec.timeout_s
        backoff = Backoff()
        while pending and time.monotonic() < deadline:
            try:
                replies = await client.batch([("tx_send", [self.txs[h].raw]) for h in pending], node=worker)
            except NodeUnavailable:
                await asyncio.sleep(NO_NODE_PAUSE_S)
                continue
            retry = []
            pushed_back = False
            for h, reply in zip(pending, replies, strict=True):
                tracked = self.txs[h]
                tracked.attempts += 1
                if reply.error is None:
                    tracked.acked, tracked.acked_at = True, time.monotonic()
                    continue
                reason = reply.reason or str(reply.error.code)
                if reason in KNOWN_REASONS:
                    tracked.acked, tracked.acked_at = True, time.monotonic()
                elif reason in BACKPRESSURE:
                    retry.append(h)
                    pushed_back = True
                elif reason in RETRY_REASONS and tracked.attempts < ATTEMPTS_MAX:
                    retry.append(h)
                else:
                    self.rejected[reason] = self.rejected.get(reason, 0) + 1
            pending = retry
            if pending:
                self.pushed_back += pushed_back
                await asyncio.sleep(backoff.next(pushed_back))

    async def closed_loop(self, client: RpcClient) -> None:
        batches: asyncio.Queue[list[str]] = asyncio.Queue()
        for start in range(0, len(self.order), self.spec.batch):
            batches.put_nowait(self.order[start:start + self.spec.batch])

        deadline = self.started + self.spec.timeout_s

        async def worker(index: int) -> None:
            while not batches.empty() and time.monotonic() < deadline:
                if self.spec.window and self.sent_n - self.committed_n >= self.spec.window:
                    await asyncio.sleep(POLL_S)  # the window is full: wait for finality
                    continue
                await self.send_batch(client, index, batches.get_nowait())

        await asyncio.gather(*(worker(i) for i in range(self.spec.concurrency)))

    async def open_loop(self, client: RpcClient) -> None:
        """Batches leave at `rate`; in-flight requests are capped at 4 x concurrency."""
        assert self.spec.rate
        batch = max(1, min(self.spec.batch, int(self.spec.rate / 100)))  # about 100 requests/s at most
        slots = asyncio.Semaphore(4 * self.spec.concurrency)
        tasks: list[asyncio.Task[None]] = []

        async def one(index: int, hashes: list[str], at: float) -> None:
            try:
                await self.send_batch(client, index, hashes, sent_at=at)
            finally:
                slots.release()

        for number, start in enumerate(range(0, len(self.order), batch)):
            due = self.started + start / self.spec.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            self.send_lag_s = max(self.send_lag_s, time.monotonic() - due)
            tasks.append(asyncio.ensure_future(one(number, self.order[start:start + batch], due)))
        await asyncio.gather(*tasks)

    # finality -----------------------------------------------------------------------------
    async def watch(self, client: RpcClient) -> None:
        """Follow final blocks until every acknowledged transaction is in one (or timeout)."""
        deadline = self.started + self.spec.timeout_s
        turn = 0
        while time.monotonic() < deadline:
            turn += 1
            try:
                top = (await client.call("chain_status", node=turn))["height"]
                while self.height < top:
                    heights = range(self.height + 1, min(top, self.height + 20) + 1)
                    replies = await client.batch([("chain_getBlock", [h, False]) for h in heights], node=turn)
                    seen = time.monotonic()
                    for reply in replies:
                        block = reply.result
                        if block is None:
                            break
                        for h in block["transactions"]:
                            tracked = self.txs.get(h)
                            if tracked is not None and not tracked.committed:
                                tracked.committed = seen
                                self.committed_n += 1
                        self.height = block["number"]
                        self.blocks.append((seen, block["number"], len(block["transactions"])))
                    else:
                        continue
                    break
            except (ClientError, KeyError):
                pass
            if self.sending_done and turn % 10 == 0 and all(t.committed for t in self.txs.values() if t.acked):
                return
            await asyncio.sleep(POLL_S)

    async def show_progress(self) -> None:
        last_committed, last_time = 0, time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            last_committed, last_time = self.progress_line(last_committed, last_time)

    def progress_line(self, last_committed: int, last_time: float) -> tuple[int, float]:
        now = time.monotonic()
        committed = sum(1 for t in self.txs.values() if t.committed)
        acked = sum(1 for t in self.txs.values() if t.acked)
        sent = sum(1 for t in self.txs.values() if t.sent)
        up = self.client.answering() if self.client is not None else len(self.urls)
        rate = (committed - last_committed) / (now - last_time)
        print(f"  [{now - self.started:6.1f}s] sent {sent} acked {acked} committed {committed} "
              f"({rate:,.0f} tx/s) height {self.height} nodes answering {up}/{len(self.urls)}",
              file=sys.stderr, flush=True)
        return committed, now

    async def run(self) -> dict[str, Any]:
        # open loop: up to 4 x concurrency batches in flight, and the watcher
        self.client = load_client(self.urls, 4 * self.spec.concurrency + 8)
        async with self.client as client:
            status = await client.call("chain_status", node=0)
            self.height = status["height"]
            self.views[0] = status["view"]
            cpu_nodes = [cpu_seconds(pid) for pid in self.node_pids]
            cpu_client = time.process_time()
            self.started = time.monotonic()
            progress = asyncio.ensure_future(self.show_progress()) if self.spec.progress else None
            watcher = asyncio.ensure_future(self.watch(client))
            try:
                await (self.open_loop(client) if self.spec.rate else self.closed_loop(client))
                self.sending_done = True
                self.sent_all_at = time.monotonic()
                await watcher
            finally:
                for task in (progress, watcher):
                    if task is not None:
                        task.cancel()
            if self.spec.progress:
                self.progress_line(0, self.started)
            wall = time.monotonic() - self.started
            cpu = cpu_report(wall, time.process_time() - cpu_client, cpu_nodes,
                             [cpu_seconds(pid) for pid in self.node_pids])
            receipts = await self.check_receipts(client)
            self.views[1] = (await client.call("chain_status", node=0))["view"]
        return self.report(cpu, receipts)

    async def check_receipts(self, client: RpcClient) -> dict[str, Any]:
        """Fetch the final receipt of a sample of committed transactions (status 1 expected)."""
        committed = [h for h in self.order if self.txs[h].committed]
        step = max(1, len(committed) // RECEIPT_SAMPLE)
        sample = committed[::step][:RECEIPT_SAMPLE]
        ok = 0
        started = time.monotonic()
        for start in range(0, len(sample), 50):
            chunk = sample[start:start + 50]
            replies = await client.batch([("tx_receipt", [h, RECEIPT_WAIT_MS]) for h in chunk], node=start)
            ok += sum(1 for r in replies if r.result is not None and Receipt.from_json(r.result).ok)
        seconds = time.monotonic() - started
        return {"checked": len(sample), "status_ok": ok,
                "ms_per_receipt": round(1000 * seconds / len(sample), 2) if sample else None}

    def report(self, cpu: dict[str, Any], receipts: dict[str, Any]) -> dict[str, Any]:
        acked = [t for t in self.txs.values() if t.acked]
        done = [t for t in acked if t.committed]
        latencies = sorted((t.committed - t.sent) * 1000 for t in done)
        ack_latencies = sorted((t.acked_at - t.sent) * 1000 for t in acked)
        first = min((t.sent for t in self.txs.values() if t.sent), default=self.started)
        last = max((t.committed for t in done), default=first)
        seconds = max(last - first, 1e-9)
        blocks = [b for b in self.blocks if b[2] > 0]
        full = max((b[2] for b in blocks), default=0)
        drain = [b for b in blocks if b[0] >= self.sent_all_at and b[2] == full]
        return {
            "nodes": len(self.urls),
            "t": (len(self.urls) - 1) // 2,
            "submitted": sum(1 for t in self.txs.values() if t.sent),
            "acked": len(acked),
            "committed": len(done),
            "seconds": round(seconds, 3),
            "tps": round(len(done) / seconds, 1),
            "latency_ms": {"p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
                           "p99": percentile(latencies, 99), "max": round(latencies[-1], 1) if latencies else None},
            "ack_latency_ms": {"p50": percentile(ack_latencies, 50), "p99": percentile(ack_latencies, 99)},
            "latency_percentiles_ms": {str(p): percentile(latencies, p) for p in CDF_POINTS},
            "mode": f"open loop at {self.spec.rate:g} tx/s" if self.spec.rate else "closed loop",
            "offered_rate": self.spec.rate,
            "send_lag_max_ms": round(self.send_lag_s * 1000, 1),
            "concurrency": self.spec.concurrency,
            "window": self.spec.window,
            "batch": self.spec.batch,
            "rejected": self.rejected,
            "pushed_back_batches": self.pushed_back,
            "view_at_start": self.views[0],
            "view_at_end": self.views[1],
            "blocks": len(blocks),
            "txs_per_block_mean": round(sum(b[2] for b in blocks) / len(blocks), 1) if blocks else 0,
            # final blocks per second once every transaction was in (full blocks from the backlog)
            "drain": {"blocks": len(drain), "txs_per_block": full,
                      "blocks_per_s": round((len(drain) - 1) / (drain[-1][0] - drain[0][0]), 2)
                      if len(drain) > 2 and drain[-1][0] > drain[0][0] else None},
            "block_log": [[round(seen - self.started, 3), height, n] for seen, height, n in self.blocks],
            "receipts": receipts,
            "cpu": cpu,
        }


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    rank = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))
    return round(sorted_values[rank], 1)


def cpu_report(wall: float, client_s: float, before: list[float | None], after: list[float | None]) -> dict[str, Any]:
    nodes = [round(b2 - b1, 2) if b1 is not None and b2 is not None else None
             for b1, b2 in zip(before, after, strict=True)]
    known = [n for n in nodes if n is not None]
    return {"wall_s": round(wall, 2), "client_s": round(client_s, 2), "nodes_s": nodes,
            "client_cores": round(client_s / wall, 2) if wall else None,
            "nodes_cores": round(sum(known) / wall, 2) if wall and known else None,
            "load_1m_at_end": round(load_average(), 2)}


# transactions -----------------------------------------------------------------------------
def senders_needed(txs: int) -> int:
    return max(8, math.ceil(txs / NONCE_WINDOW))


def sign_transfers(keys: list[KeyPair], count: int, chain_id: int, nonces: dict[bytes, int]) -> list[Transaction]:
    """Transaction i: sender i mod S, its next nonce; recipient another sender; amount 1."""
    out = []
    for i in range(count):
        sender = keys[i % len(keys)]
        recipient = keys[(i * 7 + 1) % len(keys)]
        if recipient is sender:
            recipient = keys[(i + 1) % len(keys)]
        nonce = nonces[sender.address]
        nonces[sender.address] = nonce + 1
        out.append(Transaction.create(sender, chain_id=chain_id, nonce=nonce, to=TOKEN, method="transfer",
                                      args=[recipient.address, 1], gas_limit=GAS_LIMIT))
    return out


def sign_dsc_opens(devices: list[KeyPair], chain_id: int, deposit: int) -> list[Transaction]:
    """Setup (untimed): every device opens one in-warranty DSC request with the deposit."""
    return [Transaction.create(d, chain_id=chain_id, nonce=0, to=DSC, method="open_request", args=[d.address],
                               value=deposit, gas_limit=GAS_LIMIT) for d in devices]


def sign_dsc_logs(devices: list[KeyPair], requests: dict[bytes, int], count: int, chain_id: int) -> list[Transaction]:
    """Transaction i: device i mod D logs the hash of diagnosis message i//D of its request
    (dsc.log_message: registry look-ups, the request record, a growing message list)."""
    out = []
    for i in range(count):
        device = devices[i % len(devices)]
        step = i // len(devices)
        out.append(Transaction.create(device, chain_id=chain_id, nonce=1 + step, to=DSC, method="log_message",
                                      args=[requests[device.address], step, keccak256(i.to_bytes(8, "big"))],
                                      gas_limit=GAS_LIMIT))
    return out


def tracked(txs: list[Transaction]) -> tuple[dict[str, Tracked], list[str]]:
    order = ["0x" + tx.hash.hex() for tx in txs]
    return {h: Tracked("0x" + rlp.encode(tx).hex()) for h, tx in zip(order, txs, strict=True)}, order


def load_client(urls: list[str], connections_max: int = 8) -> RpcClient:
    """The benchmark's client: failover along `urls`, HTTP_TIMEOUT_S per request."""
    return RpcClient(urls, timeout_s=HTTP_TIMEOUT_S, connections_max=connections_max)


async def rpc_call(urls: list[str], method: str, *params: Any) -> Any:
    async with load_client(urls) as client:
        return await client.call(method, *params)


async def pending_nonces(urls: list[str], keys: list[KeyPair]) -> dict[bytes, int]:
    """Each sender's next nonce: the highest any answering node knows. One node's pending
    nonce misses a transaction still in another's mempool (a node restarted after a kill,
    the transfer bench.consensus.one_kill sent to the survivors); signing that nonce again
    would be refused as a replay, counted as acknowledged and never committed."""
    nonces: dict[bytes, int] = {}
    answered = 0
    for url in urls:
        try:
            async with load_client([url]) as client:
                for start in range(0, len(keys), 100):
                    chunk = keys[start:start + 100]
                    replies = await client.batch([("account_get", ["0x" + k.address.hex()]) for k in chunk])
                    for key, reply in zip(chunk, replies, strict=True):
                        nonce = reply.value()["pendingNonce"]
                        nonces[key.address] = max(nonce, nonces.get(key.address, nonce))
            answered += 1
        except NodeUnavailable:
            continue
    if not answered:
        raise NodeUnavailable(f"no node of {urls} answered account_get")
    return nonces


async def open_dsc_requests(urls: list[str], devices: list[KeyPair], chain_id: int,
                            deposit: int) -> dict[bytes, int]:
    """Setup for --kind dsc: open one request per device, wait for finality, read the ids."""
    txs = sign_dsc_opens(devices, chain_id, deposit)
    table, order = tracked(txs)
    run = LoadRun(urls, LoadSpec(len(txs), progress=False, timeout_s=120), table, order)
    result = await run.run()
    if result["committed"] != len(txs):
        raise RuntimeError(f"DSC setup: {result['committed']}/{len(txs)} open_request final ({result['rejected']})")
    requests: dict[bytes, int] = {}
    async with load_client(urls) as client:
        for start in range(0, len(order), 50):
            chunk = order[start:start + 50]
            replies = await client.batch([("tx_receipt", [h, RECEIPT_WAIT_MS]) for h in chunk], node=start)
            for reply in replies:
                receipt = Receipt.from_json(reply.value())
                assert receipt.ok, f"open_request failed: {receipt.error}"
                opened = receipt.event("RequestOpened")
                requests[opened.bytes_of("device")] = opened.int_of("request")
    return requests


# one run ------------------------------------------------------------------------------------
@dataclass
class LoadOptions:
    nodes: int = 3
    txs: int = 10_000
    concurrency: int = 8
    batch: int = 100
    rate: float | None = None
    kind: str = "transfer"
    rpc: list[str] | None = None
    accounts: Path | None = None  # accounts.json of an external cluster (--rpc)
    extra_accounts: int = 0  # state size: more funded genesis accounts
    consensus: dict[str, Any] | None = None
    p2p: dict[str, Any] | None = None  # [p2p] settings of every node (bench.encryption)
    limits: dict[str, int] | None = None
    profile_dir: Path | None = None
    kill_node: int | None = None
    kill_at_s: float = 0.0
    timeout_s: float = 300
    progress: bool = True
    window: int | None = DEFAULT_WINDOW
    cpus: set[int] | None = None  # pin every node process to these CPUs (a slower machine)


def say(message: str, progress: bool = True) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


async def drive(urls: list[str], keys: list[KeyPair], devices: list[KeyPair], options: LoadOptions,
                pids: list[int], on_started: Callable[[], None] | None = None,
                dsc_deposit: int = DSC_REQUEST_DEPOSIT) -> tuple[dict[str, Any], list[str]]:
    chain_id = (await rpc_call(urls, "chain_status"))["chainId"]
    if options.kind == "dsc":
        say(f"DSC setup: {len(devices)} devices open a request each ...", options.progress)
        requests = await open_dsc_requests(urls, devices, chain_id, dsc_deposit)
        say(f"signing {options.txs} dsc.log_message calls ...", options.progress)
        txs = sign_dsc_logs(devices, requests, options.txs, chain_id)
    else:
        nonces = await pending_nonces(urls, keys)
        say(f"signing {options.txs} transfers from {len(keys)} senders ...", options.progress)
        txs = sign_transfers(keys, options.txs, chain_id, nonces)
    table, order = tracked(txs)
    spec = LoadSpec(options.txs, options.concurrency, options.batch, options.rate, timeout_s=options.timeout_s,
                    window=options.window or None, progress=options.progress)
    run = LoadRun(urls, spec, table, order, node_pids=pids)
    say(f"sending to {len(urls)} nodes ({'rate ' + str(options.rate) + ' tx/s' if options.rate else 'closed loop'}, "
        f"concurrency {options.concurrency}, batch {options.batch}) ...", options.progress)
    if on_started is not None:
        asyncio.get_running_loop().call_later(options.kill_at_s, on_started)
    result = await run.run()
    result["kind"] = options.kind
    acked = [h for h in order if table[h].acked]
    return result, acked


def run_load(options: LoadOptions) -> tuple[dict[str, Any], list[str]]:
    """One load run on an external cluster (options.rpc) or on a fresh one started here."""
    started_load = load_average()
    if options.rpc:
        if options.kind == "dsc":
            raise SystemExit("--kind dsc needs registered devices: run it on a cluster bench starts (no --rpc)")
        accounts = options.accounts or Path("var/cluster/accounts.json")
        keys = account_keys(accounts.parent)
        result, acked = asyncio.run(drive(options.rpc, keys, [], options, []))
    else:
        senders = senders_needed(options.txs)
        devices = math.ceil(options.txs / DSC_MESSAGES_MAX) if options.kind == "dsc" else 0
        say(f"starting {options.nodes} nodes ({senders} senders, {options.extra_accounts} extra accounts, "
            f"{devices} DSC devices) ...", options.progress)
        with bench_cluster(options.nodes, senders=senders, extra_accounts=options.extra_accounts,
                           dsc_devices=devices, consensus=options.consensus, limits=options.limits, p2p=options.p2p,
                           profile_dir=options.profile_dir) as cluster:
            if options.cpus is not None:
                for pid in cluster.pids():
                    os.sched_setaffinity(pid, options.cpus)
            killer = None
            if options.kill_node is not None:
                killer = _killer(cluster, options.kill_node, options.progress)
            result, acked = asyncio.run(drive(cluster.urls, cluster.senders, cluster.devices, options,
                                              cluster.pids(), killer, cluster.dsc_deposit))
    result["machine"] = {**machine(), "load_1m_at_start": round(started_load, 2)}
    # accounts in the state of a cluster started here (unknown for --rpc)
    result["accounts"] = None if options.rpc else options.extra_accounts + senders_needed(options.txs)
    return result, acked


def _killer(cluster: BenchCluster, node: int, progress: bool) -> Callable[[], None]:
    def kill() -> None:
        say(f"  SIGKILL node{node}", progress)
        process = cluster.processes.processes[node]
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    return kill


def write_outputs(result: dict[str, Any], acked: list[str], json_path: Path | None, hashes: Path | None) -> None:
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if hashes is not None:
        hashes.parent.mkdir(parents=True, exist_ok=True)
        hashes.write_text("".join(h + "\n" for h in acked))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, default=3, help="bookkeepers of the cluster started here (2t+1)")
    parser.add_argument("--txs", type=int, default=10_000, help="transactions to send (M)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent JSON-RPC sessions (C)")
    parser.add_argument("--batch", type=int, default=100, help="transactions per JSON-RPC batch request")
    parser.add_argument("--rate", type=float, help="open loop: offered transactions per second")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="closed loop: most transactions sent but not yet final (0: no limit)")
    parser.add_argument("--kind", choices=KINDS, default="transfer", help="what each transaction does")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--hashes", type=Path, help="write every acknowledged transaction hash here")
    parser.add_argument("--rpc", action="append", help="use this running node (repeatable) instead of a new cluster")
    parser.add_argument("--accounts", type=Path, help="accounts.json of the --rpc cluster (default var/cluster)")
    parser.add_argument("--extra-accounts", type=int, default=0, help="more funded genesis accounts (state size)")
    parser.add_argument("--block-txs", type=int, help="genesis block_txs_max (default 2000)")
    parser.add_argument("--profile", type=Path, help="run the nodes under cProfile; node{i}.prof go here")
    parser.add_argument("--kill-node", type=int, help="SIGKILL this node --kill-at seconds into the run")
    parser.add_argument("--kill-at", type=float, default=2.0, help="seconds into the run of the --kill-node kill")
    parser.add_argument("--timeout", type=float, default=300, help="bound on the timed part, seconds")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def options_from(args: argparse.Namespace) -> LoadOptions:
    return LoadOptions(nodes=args.nodes, txs=args.txs, concurrency=args.concurrency, batch=args.batch,
                       rate=args.rate, kind=args.kind, rpc=args.rpc, accounts=args.accounts,
                       extra_accounts=args.extra_accounts,
                       limits={"block_txs_max": args.block_txs} if args.block_txs else None,
                       profile_dir=args.profile, kill_node=args.kill_node, kill_at_s=args.kill_at,
                       timeout_s=args.timeout, progress=not args.quiet, window=args.window)


def main_args(args: argparse.Namespace) -> int:
    result, acked = run_load(options_from(args))
    write_outputs(result, acked, args.json, args.hashes)
    print(json.dumps({k: result[k] for k in ("nodes", "t", "submitted", "acked", "committed", "seconds", "tps",
                                             "latency_ms")}))
    if args.profile:
        print(f"node profiles in {args.profile}: python -m pstats {args.profile}/node0.prof", file=sys.stderr)
    return 0 if result["committed"] == result["acked"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_arguments(parser)
    return main_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
