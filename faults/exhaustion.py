"""Resource exhaustion by an outsider, against a running 3-node cluster (issue 10). Every
attack is bounded in connections and time, and sends only to 127.0.0.1; attackers bind
other loopback source addresses (127.0.0.2, ...) where the point is per-address limits.

exhaust-slowloris   RPC connections that send one header line a second and never finish:
                    first 3 x connections_per_client_max from one address, then from
                    enough addresses to pass connections_max; meanwhile node2 is killed
                    and restarted and must handshake with node0 again.
exhaust-batch       blocks of ~1 MB (15 KB transactions), then batches of 100
                    chain_getBlock(full) (~200 MiB of replies on the old code) while a
                    prober times /health on node0 (the consensus loop answers it).
exhaust-handshakes  70 silent connections per p2p listener, re-opened as soon as the node
                    closes one, while node1 is killed and restarted: how long until node1
                    has its peers back.

Checked after each: nodes up, the chain live (a transfer final), node0 <-> node1 never
dropped (slowloris, batch), the node's descriptors and RSS bounded, its log not flooded,
and the attack-specific figures below.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import rlp

from chain import Transaction
from crypto import KeyPair
from faults.cluster import FaultCluster
from faults.fuzz import RSS_GROWTH_MAX, _inv, _peer_left_count, _transfer
from faults.workload import chain_facts

TARGET = 0
# RPC limits of the attacked cluster: small enough that a short run passes them with a few
# hundred sockets (the defaults are 1024 and 64).
RPC_LIMITS = {"connections_max": 192, "connections_per_client_max": 32, "header_timeout_ms": 3000}
LOG_GROWTH_MAX = 1 << 20  # bytes node0 may log during an attack
SQUATTERS_PER_LISTENER = 70
RECONNECT_S_MAX = 5.0  # a restarted node up to its peers back (it was 26 s with squatters before)
STALL_S_MAX = 1.0  # longest /health answer during the batch attack (commit_timeout_ms is 1.5 s)
BIG_TX_ARG_BYTES = 15_000  # a 15 KB transaction (tx_bytes_max is 16 KB)
BURST_TXS, BURST_PER_SENDER = 64, 8  # one burst: ~1 MB of transactions


def run_exhaustion(name: str, seed: int, duration: float, workdir: Path | None, keep: bool = False,
                   log: Any = print) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"faults-{name}-", dir=workdir))
    try:
        return asyncio.run(_run(name, seed, duration, base, log))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


async def _run(name: str, seed: int, duration: float, directory: Path, log: Any) -> dict[str, Any]:
    from faults.scenarios import SCENARIOS

    began = time.monotonic()
    _raise_own_descriptor_limit()
    # exhaust-batch wants full blocks: the primary waits a little longer to batch a burst
    consensus = {"commit_timeout_ms": 1500, **({"batch_timeout_ms": 300} if name == "exhaust-batch" else {})}
    cluster = FaultCluster(directory / "cluster", 3, consensus, seed=seed, rpc=RPC_LIMITS)
    entry: dict[str, Any] = {"name": name, "seed": seed, "n": 3, "t": 1, "passed": False,
                             "summary": SCENARIOS[name].summary}
    try:
        cluster.start()
        await cluster.wait_serving()
        await cluster.wait_connected()
        chain_id, token = await chain_facts(cluster)
        log_before = _log_bytes(cluster)
        left_before = _peer_left_count(cluster)
        rss_start = cluster.rss_bytes(TARGET) or 0
        peak = [rss_start]
        sampler = asyncio.create_task(_sample_rss(cluster, peak))
        attack = {"exhaust-slowloris": _slowloris, "exhaust-batch": _batch, "exhaust-handshakes": _squat}[name]
        figures, invariants = await attack(cluster, chain_id, token, duration)
        sampler.cancel()
        live = await _transfer(cluster, chain_id, token)
        log_growth = _log_bytes(cluster) - log_before
        invariants.update({
            "nodes_up": _inv(all(cluster.is_running(i) for i in range(3)), "every node process running"),
            "live_after_attack": _inv(live, "a transfer became final afterwards" if live else "no transfer final"),
            "rss_bounded": _inv(peak[0] - rss_start < RSS_GROWTH_MAX,
                                f"node0 RSS {rss_start >> 20} MiB at start, peak {peak[0] >> 20} MiB "
                                f"(limit +{RSS_GROWTH_MAX >> 20} MiB)"),
            "log_not_flooded": _inv(log_growth < LOG_GROWTH_MAX, f"node0 logged {log_growth} bytes during the attack"),
        })
        if name != "exhaust-handshakes":  # that one restarts node1 on purpose
            left = _peer_left_count(cluster) - left_before
            invariants["honest_peers_kept"] = _inv(left == 0, f"node0<->node1 drops during the attack: {left}")
        figures.update({"rss_mib": {"start": rss_start >> 20, "peak": peak[0] >> 20},
                        "log_bytes": log_growth})
        entry.update({"exhaustion": figures, "invariants": invariants,
                      "passed": all(v["passed"] for v in invariants.values())})
    except Exception as exc:  # noqa: BLE001 - reported as a failed scenario
        import traceback
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc()
        log(entry["traceback"])
    finally:
        await cluster.aclose()
        entry["logs"] = str(directory / "cluster")
        entry["wall_s"] = round(time.monotonic() - began, 1)
    return entry


Result = tuple[dict[str, Any], dict[str, dict[str, Any]]]
RSS_SAMPLE_S = 0.2


async def _sample_rss(cluster: FaultCluster, peak: list[int]) -> None:
    """Until cancelled: node0's peak RSS into peak[0]."""
    while True:
        peak[0] = max(peak[0], cluster.rss_bytes(TARGET) or 0)
        await asyncio.sleep(RSS_SAMPLE_S)


# --- slowloris --------------------------------------------------------------------------
async def _slow_client(port: int, source: str, hold_s: float, counts: Counter[str]) -> None:
    """One slowloris connection: a header line a second, never the end of the headers."""
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 10)
    except (OSError, TimeoutError):
        counts["connect_failed"] += 1
        return
    counts["opened"] += 1
    end = loop.time() + hold_s
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while loop.time() < end:
            try:
                data = await asyncio.wait_for(reader.read(65536), 1.0)
            except TimeoutError:
                writer.write(b"X-Slow: 1\r\n")
                continue
            if data.startswith(b"HTTP/1.1 503"):
                body = json.loads(data.partition(b"\r\n\r\n")[2] or b"{}")
                counts[f"refused_{body.get('error', {}).get('data', {}).get('limit')}"] += 1
                return
            if not data:
                counts["closed_by_node"] += 1
                return
            counts["other_reply"] += 1
        counts["held_to_end"] += 1
    except OSError:
        counts["closed_by_node"] += 1
    finally:
        writer.close()


def _fd_count(cluster: FaultCluster, i: int) -> int:
    pid = cluster.pid(i)
    return len(os.listdir(f"/proc/{pid}/fd")) if pid is not None else 0


async def _slowloris(cluster: FaultCluster, chain_id: int, token: bytes, duration: float) -> Result:
    port = cluster.layout.rpc_port(TARGET)
    per_client, total = RPC_LIMITS["connections_per_client_max"], RPC_LIMITS["connections_max"]
    hold_s = max(duration, RPC_LIMITS["header_timeout_ms"] / 1000 + 3)
    fds_before = _fd_count(cluster, TARGET)
    # Phase 1: one attacker address, 3x its cap; a client at another address is still served.
    one = Counter[str]()
    phase1 = [asyncio.create_task(_slow_client(port, "127.0.0.2", hold_s, one)) for _ in range(3 * per_client)]
    await asyncio.sleep(1.0)
    served = await cluster.status(TARGET, timeout_s=5) is not None
    # Phase 2: enough addresses to pass connections_max; node2 restarts meanwhile.
    many = Counter[str]()
    sources = [f"127.0.0.{k}" for k in range(3, 3 + total // per_client + 2)]
    phase2 = [asyncio.create_task(_slow_client(port, s, hold_s, many)) for s in sources for _ in range(per_client)]
    await asyncio.sleep(1.0)
    fds_peak = _fd_count(cluster, TARGET)
    cluster.kill(2)
    cluster.start_node(2)
    await _wait_peer(cluster, TARGET, "node2", 30)
    await asyncio.gather(*phase1, *phase2)
    rejoin_s = _peers_back_s(cluster.layout.node_dir(2) / "node.log", ("node0",))
    opened = one["opened"] + many["opened"]
    figures = {"phase1_one_address": dict(one), "phase2_many_addresses": dict(many),
               "node0_descriptors": {"before": fds_before, "peak": fds_peak}, "node2_peers_back_s": rejoin_s}
    invariants = {
        "per_client_cap": _inv(one["refused_connections_per_client_max"] >= 2 * per_client - 2,
                               f"one address: {dict(one)} (cap {per_client})"),
        "total_cap": _inv(many["refused_connections_max"] > 0, f"many addresses: {dict(many)} (cap {total})"),
        "other_client_served": _inv(served, "chain_status from 127.0.0.1 answered during phase 1"
                                    if served else "chain_status from 127.0.0.1 failed during phase 1"),
        "slow_connections_closed": _inv(one["held_to_end"] + many["held_to_end"] == 0,
                                        f"{opened} opened, {one['held_to_end'] + many['held_to_end']} still open "
                                        f"after {hold_s:.0f} s (header_timeout_ms {RPC_LIMITS['header_timeout_ms']})"),
        "descriptors_bounded": _inv(fds_peak <= fds_before + total + 16,
                                    f"node0 descriptors {fds_before} before, {fds_peak} at the peak"),
        "restarted_peer_handshakes": _inv(rejoin_s is not None and rejoin_s <= RECONNECT_S_MAX,
                                          f"node2 had node0 back {rejoin_s} s after it was up"),
    }
    return figures, invariants


async def _wait_peer(cluster: FaultCluster, i: int, peer: str, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        status = await cluster.status(i, timeout_s=2)
        if status is not None and peer in status["peers"]:
            return True
        await asyncio.sleep(0.2)
    return False


# --- oversize batch ---------------------------------------------------------------------
async def _fill_big_blocks(cluster: FaultCluster, chain_id: int, token: bytes, rounds: int) -> list[int]:
    """Rounds of BURST_TXS transactions of 15 KB (the call fails; the transaction is
    stored), each burst batched into one or two ~1 MB blocks. Bursts stay modest: a
    backlog of hundreds of 16 KB transactions is a flood of its own (issue 10, Overload).
    Returns the heights holding them."""
    senders = cluster.accounts[:BURST_TXS // BURST_PER_SENDER]

    async def send(key: KeyPair) -> list[str]:
        nonce = (await cluster.call(1, "account_get", "0x" + key.address.hex()))["pendingNonce"]
        sent = []
        for k in range(BURST_PER_SENDER):
            tx = Transaction.create(key, chain_id=chain_id, nonce=nonce + k, to=token, method="transfer",
                                    args=[key.address, 1, b"x" * BIG_TX_ARG_BYTES], gas_limit=1_000_000)
            sent.append(await cluster.call(1, "tx_send", "0x" + rlp.encode(tx).hex(), timeout_s=20))
        return sent

    heights = set()
    for _ in range(rounds):
        hashes = [h for sent in await asyncio.gather(*(send(key) for key in senders)) for h in sent]
        for tx_hash in hashes:
            receipt = None
            for _ in range(60):
                receipt = await cluster.receipt(0, tx_hash, 1000)
                if receipt is not None:
                    break
            assert receipt is not None, f"transaction {tx_hash} never final"
            heights.add(receipt.block_number)
    return sorted(heights)


async def _probe_health(cluster: FaultCluster, stop: asyncio.Event, latencies: list[float]) -> None:
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            started = time.monotonic()
            try:
                async with session.get(f"{cluster.url(TARGET)}/health", timeout=aiohttp.ClientTimeout(total=30)) as r:
                    await r.read()
            except (aiohttp.ClientError, TimeoutError):
                pass
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.05)


async def _batch(cluster: FaultCluster, chain_id: int, token: bytes, duration: float) -> Result:
    heights = await _fill_big_blocks(cluster, chain_id, token, rounds=2 if duration < 10 else 4)
    views_before = sum([await cluster.metric(i, "gridchain_view_changes_total", timeout_s=10) for i in range(3)])
    stall_before_s = await cluster.metric(TARGET, "gridchain_loop_stall_max_seconds", timeout_s=10)
    latencies: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(_probe_health(cluster, stop, latencies))
    batches = max(3, int(duration / 2))
    outcomes: Counter[str] = Counter()
    reply_bytes: list[int] = []
    # raw, not the client's batch: the figure is the reply's size on the wire
    session = await cluster.client.session()
    for b in range(batches):  # bounded: a few batches of 100
        body = [{"jsonrpc": "2.0", "id": k, "method": "chain_getBlock",
                 "params": [heights[(b + k) % len(heights)], True]} for k in range(100)]
        async with session.post(cluster.url(TARGET), json=body, timeout=aiohttp.ClientTimeout(total=120)) as response:
            raw = await response.read()
        reply_bytes.append(len(raw))
        for reply in json.loads(raw):
            outcomes["result" if "result" in reply else f"error_{reply['error'].get('data', {}).get('limit')}"] += 1
        stop.set()
    await prober
    views_after = sum([await cluster.metric(i, "gridchain_view_changes_total", timeout_s=10) for i in range(3)])
    loop_stall_s = await cluster.metric(TARGET, "gridchain_loop_stall_max_seconds", timeout_s=10)
    budget = 16 << 20
    figures = {"block_heights": heights, "batches": batches, "outcomes": dict(outcomes),
               "reply_mib": [round(n / (1 << 20), 1) for n in reply_bytes],
               "health_latency_max_s": round(max(latencies, default=0.0), 3),
               "loop_stall_max_s": {"before_attack": round(stall_before_s, 3), "after": round(loop_stall_s, 3)},
               "view_changes": views_after - views_before}
    invariants = {
        "batch_reply_bounded": _inv(max(reply_bytes) <= budget + 100 * 200,
                                    f"largest batch reply {max(reply_bytes)} bytes (budget {budget})"),
        "over_budget_is_limit_error": _inv(outcomes["error_batch_response_bytes_max"] > 0
                                           and set(outcomes) <= {"result", "error_batch_response_bytes_max"},
                                           f"replies: {dict(outcomes)}"),
        # timed from here, so the figure includes this process's own lag (it parses the replies)
        "consensus_not_stalled": _inv(max(latencies, default=0.0) < STALL_S_MAX,
                                      f"/health answered within {max(latencies, default=0.0):.3f} s at worst "
                                      f"(node0's loop stall max {stall_before_s:.3f} s before, "
                                      f"{loop_stall_s:.3f} s after)"),
        "no_view_change": _inv(views_after == views_before, f"{views_after - views_before} view changes"),
    }
    return figures, invariants


# --- handshake squatting ----------------------------------------------------------------
async def _squatter(port: int, stop: asyncio.Event, counts: Counter[str]) -> None:
    """A silent unauthenticated connection, opened again whenever the node closes it."""
    while not stop.is_set() and counts["opened"] < 20_000:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        except (OSError, TimeoutError):
            counts["connect_failed"] += 1
            await asyncio.sleep(0.1)
            continue
        counts["opened"] += 1
        try:
            while not stop.is_set():
                try:
                    if not await asyncio.wait_for(reader.read(65536), 0.5):
                        counts["closed_by_node"] += 1
                        break
                except TimeoutError:
                    continue
        except OSError:
            counts["closed_by_node"] += 1
        finally:
            writer.close()


async def _squat(cluster: FaultCluster, chain_id: int, token: bytes, duration: float) -> Result:
    stop = asyncio.Event()
    counts: Counter[str] = Counter()
    squatters = [asyncio.create_task(_squatter(cluster.layout.p2p_port(i), stop, counts))
                 for i in range(3) for _ in range(SQUATTERS_PER_LISTENER)]
    await asyncio.sleep(2.0)
    cluster.kill(1)
    cluster.start_node(1)
    await _wait_peer(cluster, 1, "node0", 40)
    await _wait_peer(cluster, 1, "node2", 10)
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.gather(*squatters)
    # Timed from node1's own log: this process also runs the squatters and the link
    # proxies, so its own clock would add its lag to the figure.
    back_s = _peers_back_s(cluster.layout.node_dir(1) / "node.log", ("node0", "node2"))
    figures = {"squatters": dict(counts), "node1_peers_back_s": back_s}
    invariants = {"restarted_peer_reconnects": _inv(back_s is not None and back_s <= RECONNECT_S_MAX,
                                                    f"node1 had node0 and node2 back {back_s} s after it was up "
                                                    f"with {SQUATTERS_PER_LISTENER} squatters per listener")}
    return figures, invariants


def _peers_back_s(log_file: Path, peers: tuple[str, ...]) -> float | None:
    """Seconds from the node's last start ("node ... up") to every one of `peers` joined."""
    lines = log_file.read_text(errors="replace").splitlines()
    starts = [k for k, line in enumerate(lines) if " up: height " in line]
    if not starts:
        return None
    since = lines[starts[-1]:]
    joined = [next((line for line in since if f"peer {peer} joined" in line), None) for peer in peers]
    if any(line is None for line in joined):
        return None
    return round(max(_log_time(line) for line in joined if line) - _log_time(since[0]), 2)


def _log_time(line: str) -> float:
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def _log_bytes(cluster: FaultCluster) -> int:
    return (cluster.layout.node_dir(TARGET) / "node.log").stat().st_size


def _raise_own_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
