"""Consensus speed on real node processes over loopback (t = 1 unless --nodes says more):

- empty blocks: final empty blocks per second with `empty_blocks` on and a 1 ms interval
  (the round trip of the common case with nothing to execute);
- full blocks: final blocks per second while 500-transaction blocks drain a backlog;
- view change: SIGKILL of the primary, then one transfer sent to the survivors -> first
  final block of a higher view, seen by a survivor (default Δ and timeouts; empty blocks
  every 20 ms keep the chain moving before the kill);
- catch-up: a node stopped while the others make blocks, restarted: blocks/s it syncs.

    python -m bench.consensus --json OUT [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import bench_cluster, cpu_seconds, machine
from bench.load import LoadOptions, drive, run_load, say, senders_needed
from client import ClientError, GridClient, RpcClient

POLL_S = 0.005
VIEW_CHANGE_TIMEOUT_S = 30
AGREE_TIMEOUT_S = 15  # after a restart, wait this long for every node to report the same view
CATCH_UP_TIMEOUT_S = 300


POLL_TIMEOUT_S = 5.0


class Poller:
    """Short JSON-RPC calls to one node at a time (no failover: the caller picks the node);
    None when it does not answer or answers an error."""

    def __init__(self, urls: list[str]) -> None:
        self.client = RpcClient(urls, failover=False, timeout_s=POLL_TIMEOUT_S)

    async def __aenter__(self) -> Poller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()

    async def call(self, url: str, method: str, *params: Any) -> Any:
        try:
            return await self.client.call(method, *params, node=self.client.urls.index(url))
        except ClientError:
            return None


# empty blocks ---------------------------------------------------------------------------------
def empty_blocks(nodes: int, seconds: float, interval_ms: int = 1) -> dict[str, Any]:
    consensus = {"empty_blocks": True, "empty_block_interval_ms": interval_ms}
    with bench_cluster(nodes, senders=2, consensus=consensus) as cluster:
        async def measure() -> dict[str, Any]:
            async with Poller(cluster.urls) as poller:
                await asyncio.sleep(1.0)  # past start-up and the first view
                cpu = [cpu_seconds(pid) for pid in cluster.pids()]
                start_h = (await poller.call(cluster.urls[0], "chain_status"))["height"]
                started = time.monotonic()
                await asyncio.sleep(seconds)
                end_h = (await poller.call(cluster.urls[0], "chain_status"))["height"]
                wall = time.monotonic() - started
                used = [(cpu_seconds(pid) or 0) - (c or 0) for pid, c in zip(cluster.pids(), cpu, strict=True)]
                return {"nodes": nodes, "interval_ms": interval_ms, "seconds": round(wall, 2),
                        "blocks": end_h - start_h, "blocks_per_s": round((end_h - start_h) / wall, 1),
                        "node_cpu_cores": round(sum(used) / wall, 2),
                        "cpu_ms_per_block_all_nodes": round(1000 * sum(used) / max(1, end_h - start_h), 2)}
        return asyncio.run(measure())


# full blocks ----------------------------------------------------------------------------------
def full_blocks(nodes: int, block_txs: int, blocks: int) -> dict[str, Any]:
    """Closed-loop load with block_txs_max = block_txs; the rate of full final blocks once the
    whole backlog was admitted (the drain) is the consensus + execution rate of such blocks."""
    options = LoadOptions(nodes=nodes, txs=block_txs * blocks, concurrency=8, limits={"block_txs_max": block_txs},
                          progress=False, timeout_s=240)
    result, _ = run_load(options)
    return {"nodes": nodes, "block_txs": block_txs, "txs": result["committed"],
            "drain_blocks": result["drain"]["blocks"],
            "blocks_per_s": result["drain"]["blocks_per_s"],
            "tps_while_draining": round(result["drain"]["blocks_per_s"] * block_txs, 1)
            if result["drain"]["blocks_per_s"] else None,
            "overall_tps": result["tps"]}


# view change ----------------------------------------------------------------------------------
def view_change(nodes: int, trials: int, interval_ms: int = 20,
                timeouts: dict[str, int] | None = None) -> dict[str, Any]:
    consensus = {"empty_blocks": True, "empty_block_interval_ms": interval_ms, **(timeouts or {})}
    with bench_cluster(nodes, senders=2, consensus=consensus) as cluster:
        async def measure() -> list[dict[str, Any]]:
            out = []
            async with Poller(cluster.urls) as poller:
                for trial in range(trials):
                    out.append(await one_kill(cluster, poller, trial))
            return out
        results = asyncio.run(measure())
    times = sorted(r["seconds"] for r in results if r["seconds"] is not None)
    return {"nodes": nodes, "empty_block_interval_ms": interval_ms, "timeouts": timeouts or "defaults",
            "trials": results,
            "seconds_median": times[len(times) // 2] if times else None, "seconds_max": times[-1] if times else None}


async def cluster_status(cluster: Any, poller: Poller) -> tuple[dict[str, Any], bool]:
    """The status of the node in the highest view, and whether every node reports that view
    (a restarted replica reports its persisted view until it hears of a newer one)."""
    deadline = time.monotonic() + AGREE_TIMEOUT_S
    while True:
        statuses = [await poller.call(url, "chain_status") for url in cluster.urls]
        known = [s for s in statuses if s is not None]
        best = max(known, key=lambda s: s["view"])
        agreed = len(known) == len(statuses) and all(s["view"] == best["view"] for s in known)
        if agreed or time.monotonic() > deadline:
            return best, agreed
        await asyncio.sleep(0.1)


async def one_kill(cluster: Any, poller: Poller, trial: int) -> dict[str, Any]:
    await asyncio.sleep(1.0)
    asked = time.monotonic()
    status, agreed = await cluster_status(cluster, poller)
    view_wait_s = round(time.monotonic() - asked, 2)
    primary_name, view = status["primary"], status["view"]
    primary = int(primary_name.removeprefix("node"))
    survivors = [u for i, u in enumerate(cluster.urls) if i != primary]
    process = cluster.processes.processes[primary]
    say(f"  trial {trial}: SIGKILL primary {primary_name} in view {view}")
    killed = time.monotonic()
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Pending work is what makes the survivors suspect the silent primary (an idle follower
    # does not expect the empty-block timer), so a client sends one transfer right away.
    async with GridClient(survivors) as client:
        sender, recipient = cluster.senders[trial % 2], cluster.senders[(trial + 1) % 2]
        await client.send(sender, "token", "transfer", [recipient.address, 1])
    seconds = None
    new_view = None
    last_seen: dict[str, int] = {}
    while time.monotonic() - killed < VIEW_CHANGE_TIMEOUT_S:
        for url in survivors:
            block = await poller.call(url, "chain_getBlock", "latest", False)
            if block is not None and block["view"] > view:
                seconds = time.monotonic() - killed
                new_view = block["view"]
                break
            if block is not None:
                last_seen[url] = block["number"]
        if seconds is not None:
            break
        await asyncio.sleep(POLL_S)
    # bring the node back and let it catch up before the next trial
    cluster.processes.start_node(primary)
    await asyncio.to_thread(cluster.processes.wait_healthy, 60)
    return {"killed": primary_name, "old_view": view, "new_view": new_view, "views_agreed_before": agreed,
            "view_agreement_wait_s": view_wait_s,
            "seconds": round(seconds, 3) if seconds is not None else None}


# catch-up -------------------------------------------------------------------------------------
def catch_up(nodes: int, txs: int, idle_s: float, interval_ms: int = 5) -> dict[str, Any]:
    """Stop the last node, let the others make blocks (a load of `txs` transfers, then
    empty blocks for `idle_s`), restart it and time its sync to the others' height."""
    consensus = {"empty_blocks": True, "empty_block_interval_ms": interval_ms}
    with bench_cluster(nodes, senders=senders_needed(txs), consensus=consensus) as cluster:
        lagger = nodes - 1
        urls = cluster.urls

        async def measure() -> dict[str, Any]:
            async with Poller(cluster.urls) as poller:
                await asyncio.sleep(1.0)
                cluster.processes.stop_node(lagger, signal.SIGKILL)
                options = LoadOptions(nodes=nodes, txs=txs, concurrency=4, progress=False, timeout_s=120)
                await drive(urls[:lagger], cluster.senders, [], options, [])
                await asyncio.sleep(idle_s)
                own = (await poller.call(urls[lagger - 1], "chain_status"))
                target = own["height"]
                behind_from = 0
                restarted = time.monotonic()
                cluster.processes.start_node(lagger)
                first_answer = None
                trace: list[list[float]] = []
                reached = None
                while time.monotonic() - restarted < CATCH_UP_TIMEOUT_S:
                    status = await poller.call(urls[lagger], "chain_status")
                    now = time.monotonic()
                    if status is not None:
                        if first_answer is None:
                            first_answer = now
                            behind_from = status["height"]
                        trace.append([round(now - restarted, 3), status["height"]])
                        if status["height"] >= target:
                            reached = now
                            break
                    await asyncio.sleep(0.05 if status is None else 0.02)
                synced_blocks = target - behind_from
                sync_s = (reached - first_answer) if reached and first_answer else None
                return {"nodes": nodes, "blocks": synced_blocks, "txs": txs, "target_height": target,
                        "height_at_start": behind_from,
                        "seconds_from_restart": round(reached - restarted, 2) if reached else None,
                        "seconds_syncing": round(sync_s, 2) if sync_s else None,
                        "blocks_per_s": round(synced_blocks / sync_s, 1) if sync_s else None,
                        "txs_per_s": round(txs / sync_s, 1) if sync_s else None, "trace": trace}
        return asyncio.run(measure())


# entry ----------------------------------------------------------------------------------------
def run_all(quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"machine": machine()}
    say("consensus: empty blocks ...")
    result["empty_blocks"] = empty_blocks(3, 3 if quick else 10)
    say(f"  {result['empty_blocks']['blocks_per_s']} final empty blocks/s")
    say("consensus: 500-transaction blocks ...")
    result["full_blocks"] = full_blocks(3, 100 if quick else 500, 4 if quick else 20)
    say(f"  {result['full_blocks']['blocks_per_s']} final blocks/s of {result['full_blocks']['block_txs']} txs")
    say("consensus: primary SIGKILL -> first final block of the new view ...")
    result["view_change"] = view_change(3, 1 if quick else 3)
    say(f"  median {result['view_change']['seconds_median']} s")
    say("consensus: catch-up of a restarted node ...")
    result["catch_up"] = catch_up(3, 500 if quick else 10_000, 1 if quick else 10)
    say(f"  {result['catch_up']['blocks_per_s']} blocks/s synced")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args(argv)
    result = run_all(args.quick)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "catch_up"}, indent=None)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
