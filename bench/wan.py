"""WAN benchmark (issue 15): the bookkeepers on hosts of their own (a network namespace each,
faults/netns.py, where permitted; else all on loopback), every link through the frame-aware
proxy (faults/proxy.py) holding each frame RTT/2 and losing a share of them the way TCP
does (one RTO late, order kept), the WAN timing preset, p2p encryption as configured (on by
default). For t = 1 and t = 2, on one cluster each, the links set per case:

- throughput: a closed loop of `--txs` transfers (bench.load, in a process of its own: the
  proxies run in this one) -> committed tx/s;
- latency: an open loop at half that rate (or at `--rate`, the same for every case: what
  compares two builds of the node on a machine whose load moves) for `--seconds` -> commit
  latency p50 / p99;
- recovery: SIGKILL of the primary, one transfer to the survivors -> the first final block
  of a higher view (bench.consensus.one_kill), then the node restarts and catches up;

and the same on the same cluster with healthy links first (the loopback reference).

    python -m bench.wan --rtt-ms 20,50,100 --loss 0,0.01 [--t 1,2] [--txs 3000] [--seconds 10] [--rate TPS] --json OUT

Goals (issue 15, at 50 ms RTT): p50 <= 3 RTT + 50 ms at half the saturating load;
throughput >= 80 % of the loopback figure; recovery <= 2 delta + 3 RTT + 1 s. Each case is
bounded in count and time; expect ~1 minute per case on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.consensus import Poller, one_kill
from bench.harness import load_average, machine
from bench.load import say, senders_needed
from consensus import TIMING_PRESETS
from crypto import KeyPair
from faults import netns
from faults.cluster import FaultCluster
from faults.proxy import HEALTHY, LinkFault
from runtime.cluster import ClusterProcesses

PRESET = "wan"
LATENCY_SHARE = 0.5  # the open loop runs at half the saturating rate (the goal)
THROUGHPUT_GOAL = 0.8  # of the loopback figure
GOAL_RTT_MS = 50
CASE_TIMEOUT_S = 180  # bound on one load run
LOAD_PROCESS_TIMEOUT_S = CASE_TIMEOUT_S + 120  # ... and on its process (signing, its cleanup)


@dataclass
class KillTarget:
    """What bench.consensus.one_kill reads of a cluster."""

    urls: list[str]
    processes: ClusterProcesses
    senders: list[KeyPair]


def goals(rtt_ms: int, delta_ms: int) -> dict[str, float]:
    return {"latency_p50_ms_max": 3 * rtt_ms + 50, "throughput_ratio_min": THROUGHPUT_GOAL,
            "recovery_s_max": (2 * delta_ms + 3 * rtt_ms + 1000) / 1000}


def set_links(cluster: FaultCluster, rtt_ms: int, loss: float) -> None:
    fault = LinkFault(delay_ms=rtt_ms // 2, loss_p=loss) if rtt_ms or loss else HEALTHY
    n = cluster.layout.nodes
    cluster.proxies.set_many([(s, d) for s in range(n) for d in range(n) if s != d], fault)


async def load_elsewhere(cluster: FaultCluster, txs: int, rate: float | None, progress: bool) -> dict[str, Any]:
    """One bench.load run against the cluster, in a process of its own. The link proxies
    live in a thread of this process: a load client sharing their interpreter lock (JSON of
    every batch and block, the finality watcher) held frames back by tens of milliseconds
    on a loaded machine, and that counted as WAN latency."""
    urls = [cluster.url(i) for i in range(cluster.nodes)]
    with tempfile.TemporaryDirectory(prefix="gridchain-wan-load-") as scratch:
        out = Path(scratch) / "load.json"
        command = [sys.executable, "-m", "bench.load", *[arg for url in urls for arg in ("--rpc", url)],
                   "--accounts", str(cluster.directory / "accounts.json"), "--txs", str(txs),
                   "--timeout", str(CASE_TIMEOUT_S), "--json", str(out),
                   *(["--rate", str(rate)] if rate else []), *([] if progress else ["--quiet"])]
        process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL)
        try:
            await asyncio.wait_for(process.wait(), LOAD_PROCESS_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        if not out.exists():
            raise RuntimeError(f"bench.load exited {process.returncode} without a result")
        result: dict[str, Any] = json.loads(out.read_text())
        return result


async def measure_case(cluster: FaultCluster, senders: list[KeyPair], txs: int, seconds: float,
                       fixed_rate: float | None, trial: int, progress: bool) -> dict[str, Any]:
    urls = [cluster.url(i) for i in range(cluster.nodes)]
    closed = await load_elsewhere(cluster, txs, None, progress)
    rate = fixed_rate or max(1.0, round(closed["tps"] * LATENCY_SHARE))
    opened = await load_elsewhere(cluster, max(1, int(rate * seconds)), rate, progress)
    async with Poller(urls) as poller:
        recovery = await one_kill(KillTarget(urls, cluster.processes, senders), poller, trial)
    return {"throughput_tps": closed["tps"], "closed_loop_committed": closed["committed"],
            "closed_loop_view_changes": _view_changes(closed),
            "latency_rate_tps": rate, "latency_ms": opened["latency_ms"], "latency_committed": opened["committed"],
            "latency_view_changes": _view_changes(opened),
            # what the latency is made of: the wait for tx_send's answer (admission on a busy
            # node) and the block cycle at that rate (one block in flight)
            "latency_ack_ms": opened["ack_latency_ms"], "latency_block_cycle_ms": block_cycle_ms(opened),
            "latency_txs_per_block": opened["txs_per_block_mean"], "recovery": recovery,
            "load_1m": round(load_average(), 2)}


def block_cycle_ms(result: dict[str, Any]) -> float | None:
    """Median time between consecutive final blocks as the client saw them."""
    seen = [entry[0] for entry in result["block_log"]]
    gaps = sorted(b - a for a, b in zip(seen, seen[1:], strict=False))
    return round(gaps[len(gaps) // 2] * 1000, 1) if gaps else None


def _view_changes(result: dict[str, Any]) -> int | None:
    start, end = result["view_at_start"], result["view_at_end"]
    return end - start if start is not None and end is not None else None


def judge(case: dict[str, Any], loopback_tps: float, rtt_ms: int, delta_ms: int) -> dict[str, Any]:
    aim = goals(rtt_ms, delta_ms)
    p50 = case["latency_ms"]["p50"]
    ratio = case["throughput_tps"] / loopback_tps if loopback_tps else None
    recovery = case["recovery"]["seconds"]
    return {**aim, "throughput_ratio": round(ratio, 2) if ratio is not None else None,
            "latency_met": p50 is not None and p50 <= aim["latency_p50_ms_max"],
            "throughput_met": ratio is not None and ratio >= THROUGHPUT_GOAL,
            "recovery_met": recovery is not None and recovery <= aim["recovery_s_max"]}


def run_t(t: int, rtts: list[int], losses: list[float], txs: int, seconds: float, rate: float | None,
          use_netns: bool, work: Path, progress: bool, saved: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The cases of one t; `saved(out)` after each, so a run cut short keeps what it measured.
    `rate`: the open loop's, for every case (None: half the case's closed-loop throughput)."""
    nodes = 2 * t + 1
    consensus = TIMING_PRESETS[PRESET]
    hosts = netns.Hosts(nodes) if use_netns else None
    cluster = FaultCluster(work / f"t{t}", nodes, consensus=consensus, hosts=hosts,
                           extra_accounts=senders_needed(txs))
    out: dict[str, Any] = {"t": t, "nodes": nodes, "preset": PRESET, "consensus": consensus,
                           "network_namespaces": use_netns, "encryption": _encryption(cluster), "cases": []}
    try:
        cluster.start()

        async def all_cases() -> None:
            await cluster.wait_serving(timeout_s=120)
            if not await cluster.wait_connected(timeout_s=120):
                raise RuntimeError("the nodes never connected")
            senders = cluster.accounts[:senders_needed(txs)]
            say(f"[wan] t = {t}: loopback reference (healthy links)", progress)
            reference = await measure_case(cluster, senders, txs, seconds, rate, 0, progress)
            out["loopback"] = reference
            saved(out)
            for k, (rtt, loss) in enumerate((r, lo) for r in rtts for lo in losses):
                set_links(cluster, rtt, loss)
                say(f"[wan] t = {t}: RTT {rtt} ms, loss {loss:.1%}", progress)
                started = time.monotonic()
                case = await measure_case(cluster, senders, txs, seconds, rate, k + 1, progress)
                case.update(rtt_ms=rtt, loss=loss, wall_s=round(time.monotonic() - started, 1),
                            judged=judge(case, reference["throughput_tps"], rtt, consensus["delta_ms"]))
                out["cases"].append(case)
                saved(out)
                say(f"[wan]   {case['throughput_tps']} tx/s, p50 {case['latency_ms']['p50']} ms, "
                    f"p99 {case['latency_ms']['p99']} ms, recovery {case['recovery']['seconds']} s", progress)
                set_links(cluster, 0, 0.0)

        asyncio.run(all_cases())
    finally:
        asyncio.run(cluster.aclose())
    return out


def _encryption(cluster: FaultCluster) -> bool:
    from runtime.config import NodeConfig

    return NodeConfig.load(cluster.layout.node_dir(0) / "node.toml").p2p.encryption


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rtt-ms", default="20,50,100", help="round-trip times to emulate, comma-separated")
    parser.add_argument("--loss", default="0,0.01", help="shares of frames lost (TCP retransmits them), comma-sep.")
    parser.add_argument("--t", default="1,2", help="fault thresholds to run, comma-separated (n = 2t+1)")
    parser.add_argument("--txs", type=int, default=3_000, help="transfers of each closed-loop (throughput) run")
    parser.add_argument("--seconds", type=float, default=10, help="length of each open-loop (latency) run")
    parser.add_argument("--rate", type=float, help="the open loop's rate in tx/s for every case "
                        "(default: half the case's closed-loop throughput, the issue's goal)")
    parser.add_argument("--loopback", action="store_true", help="all nodes on loopback even where namespaces work")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    rtts = [int(v) for v in args.rtt_ms.split(",") if v]
    losses = [float(v) for v in args.loss.split(",") if v]
    reason = "--loopback" if args.loopback else netns.available()
    use_netns = reason is None
    say(f"[wan] nodes {'in network namespaces' if use_netns else f'on loopback ({reason})'}", not args.quiet)
    result: dict[str, Any] = {"machine": {**machine(), "load_1m_at_start": round(load_average(), 2)},
                              "rtt_ms": rtts, "loss": losses, "txs": args.txs, "seconds": args.seconds,
                              "rate": args.rate, "runs": []}
    def saved(run: dict[str, Any]) -> None:
        result["runs"] = [r for r in result["runs"] if r["t"] != run["t"]] + [run]
        result["machine"]["load_1m_at_end"] = round(load_average(), 2)
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")

    signal.signal(signal.SIGTERM, _interrupted)  # `timeout` stops a run: the clusters are stopped, namespaces removed
    with tempfile.TemporaryDirectory(prefix="gridchain-wan-") as work:
        for t in (int(v) for v in args.t.split(",") if v):
            saved(run_t(t, rtts, losses, args.txs, args.seconds, args.rate, use_netns, Path(work), not args.quiet,
                        saved))
    print(json.dumps([{"t": run["t"], "loopback_tps": run["loopback"]["throughput_tps"],
                       "cases": [{k: c[k] for k in ("rtt_ms", "loss", "throughput_tps", "latency_ms")}
                                 | {"recovery_s": c["recovery"]["seconds"], "judged": c["judged"]}
                                 for c in run["cases"]]} for run in result["runs"]], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
