"""The checker: after heal and settle, read every node's chain over RPC and judge the
History. Each invariant is a (passed, detail) pair; figures are plain numbers for the
report.

Invariants (docs/faults.md says why each matters):
    no_fork                one block hash per height across every honest node
    state_roots_agree      equal state roots at equal heights
    chain_time_sane        block time strictly increases and no block is dated further ahead
                           of the harness's clock than clock_drift_ms_max (clock-skew scenarios)
    acknowledged_final     every ok transaction is in the final chain, in the block its
                           receipt named, on every node that reached that height
    no_duplicates          no transaction hash appears twice in the final chain
    failed_not_committed   no definitely-refused transaction is in the final chain
    heights_monotonic      no node's reported height ever went down (restarts included)
    admitted_not_stranded  a transaction a node admitted is final after heal unless its nonce
                           was used by another or that node lost its mempool (restart)
    converged              after settle every running honest node has the same head
    live_after_heal        a fresh probe transaction became final after the heal
    no_progress_while_down (only with more than t crashed) nothing became final meanwhile
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from client import ClientError
from consensus import ConsensusConfig
from faults.cluster import FaultCluster
from faults.history import ADMITTED_NO_RECEIPT, FAIL, INFO, OK, History

BATCH = 100


@dataclass
class NodeChain:
    node: int
    height: int
    head: str
    blocks: dict[int, dict[str, Any]] = field(default_factory=dict)  # number -> {hash, stateRoot, txs}


async def read_chain(cluster: FaultCluster, i: int) -> NodeChain | None:
    try:
        status = await cluster.call(i, "chain_status", timeout_s=5)
        height = status["height"]
        chain = NodeChain(i, height, status["headHash"])
        for start in range(1, height + 1, BATCH):
            numbers = list(range(start, min(start + BATCH, height + 1)))
            blocks = await cluster.batch(i, [("chain_getBlock", [n, False]) for n in numbers])
            for n, reply in zip(numbers, blocks, strict=True):
                if (block := reply.result) is not None:
                    chain.blocks[n] = {"hash": block["hash"], "stateRoot": block["stateRoot"],
                                       "parentHash": block["parentHash"], "txs": block["transactions"],
                                       "time": block["timestampMs"]}
        return chain
    except (ClientError, KeyError):
        return None


async def read_chains(cluster: FaultCluster, nodes: list[int]) -> dict[int, NodeChain]:
    chains = await asyncio.gather(*(read_chain(cluster, i) for i in nodes))
    return {c.node: c for c in chains if c is not None}


def check(history: History, chains: dict[int, NodeChain], honest: list[int], running: list[int],
          probe_final: bool | None, down_windows: list[tuple[float, float]] | None = None,
          clock_drift_ms_max: int = ConsensusConfig(t=1).clock_drift_ms_max) -> dict[str, Any]:
    """Judge the run; returns {"invariants": {...}, "figures": {...}}."""
    inv: dict[str, dict[str, Any]] = {}
    figures: dict[str, Any] = {}
    honest_chains = [chains[i] for i in honest if i in chains]

    # one hash and one state root per height
    hashes: dict[int, set[str]] = defaultdict(set)
    roots: dict[int, set[str]] = defaultdict(set)
    for chain in honest_chains:
        for n, block in chain.blocks.items():
            hashes[n].add(block["hash"])
            roots[n].add(block["stateRoot"])
    forks = sorted(n for n, hs in hashes.items() if len(hs) > 1)
    root_splits = sorted(n for n, rs in roots.items() if len(rs) > 1)
    inv["no_fork"] = _inv(not forks, f"heights with two hashes: {forks[:10]}" if forks else
                          f"{len(hashes)} heights agree on {len(honest_chains)} nodes")
    inv["state_roots_agree"] = _inv(not root_splits, f"heights with two roots: {root_splits[:10]}"
                                    if root_splits else "equal roots at every shared height")
    figures["forks"] = len(forks)
    inv["chain_time_sane"] = _chain_time(honest_chains, clock_drift_ms_max)
    byzantine = [chains[i] for i in chains if i not in honest]
    if byzantine:
        figures["byzantine_node_forks"] = sum(
            1 for c in byzantine for n, b in c.blocks.items() if hashes.get(n) and b["hash"] not in hashes[n])

    # the final chain (the longest honest one; with no fork every other is its prefix)
    canonical = max(honest_chains, key=lambda c: c.height, default=None)
    where: dict[str, list[int]] = defaultdict(list)
    if canonical is not None:
        for n in sorted(canonical.blocks):
            for tx in canonical.blocks[n]["txs"]:
                where[tx].append(n)
    duplicated = {tx: ns for tx, ns in where.items() if len(ns) > 1}
    inv["no_duplicates"] = _inv(not duplicated, f"{len(duplicated)} transactions final twice: "
                                f"{list(duplicated.items())[:3]}" if duplicated else "every transaction once")
    figures["duplicated"] = len(duplicated)

    ops = history.ops
    acked = [op for op in ops if op.outcome == OK]
    found, lost = 0, []
    for op in acked:
        blocks = where.get(op.tx, [])
        named = canonical.blocks.get(op.block) if canonical is not None and op.block is not None else None
        on_every = all(op.tx in c.blocks[op.block]["txs"] for c in honest_chains
                       if op.block is not None and op.block in c.blocks)
        if blocks == [op.block] and named is not None and named["hash"] == op.block_hash and on_every:
            found += 1
        else:
            lost.append({"tx": op.tx, "receipt_block": op.block, "final_blocks": blocks})
    inv["acknowledged_final"] = _inv(not lost, f"final {found} of {len(acked)}"
                                     + (f"; lost {lost[:3]}" if lost else ""))
    figures["acknowledged"] = {"found_final": found, "of": len(acked)}
    figures["lost"] = len(lost)

    failed = [op for op in ops if op.outcome == FAIL]
    committed_failures = [op.tx for op in failed if op.tx in where]
    inv["failed_not_committed"] = _inv(not committed_failures, f"{len(committed_failures)} of {len(failed)} refused "
                                       f"transactions are final: {committed_failures[:3]}" if committed_failures
                                       else f"none of {len(failed)} refused transactions is final")
    unknown = [op for op in ops if op.outcome == INFO]
    figures["unknown_committed"] = sum(1 for op in unknown if op.tx in where)

    # Admitted (tx_send answered with its hash) but never final, although its nonce is still
    # free and the admitting node kept its mempool: nothing will ever commit it.
    consumed = {(op.sender, op.nonce) for op in ops if op.tx in where}
    stranded = [op for op in unknown if op.detail == ADMITTED_NO_RECEIPT and op.tx not in where
                and (op.sender, op.nonce) not in consumed
                and not any(node == op.node and at > op.invoke for at, node in history.restarts)]
    figures["stranded"] = len(stranded)
    inv["admitted_not_stranded"] = _inv(not stranded, f"{len(stranded)} admitted transactions never final with "
                                        f"their nonce free: " + ", ".join(f"{op.tx[:18]} at node{op.node} "
                                                                         f"t={op.invoke:.2f}" for op in stranded[:4])
                                        if stranded else "every admitted transaction final or superseded")

    # heights never go down, across restarts too
    regressions = []
    last: dict[int, tuple[float, int]] = {}
    for sample in sorted(history.samples, key=lambda s: s.time):
        previous = last.get(sample.node)
        if previous is not None and sample.height < previous[1] and sample.node in honest:
            regressions.append({"node": sample.node, "from": previous[1], "to": sample.height,
                                "t": round(sample.time, 2)})
        last[sample.node] = (sample.time, max(sample.height, previous[1] if previous else 0))
    inv["heights_monotonic"] = _inv(not regressions, f"{len(regressions)} regressions: {regressions[:3]}"
                                    if regressions else f"{len(history.samples)} samples, none lower than before")

    heads = {i: (chains[i].height, chains[i].head) for i in running if i in chains and i in honest}
    converged = len(set(heads.values())) == 1 and len(heads) == len([i for i in running if i in honest])
    inv["converged"] = _inv(converged, f"heads {heads}")
    if probe_final is not None:
        inv["live_after_heal"] = _inv(probe_final, "probe transaction final" if probe_final
                                      else "probe transaction NOT final in time")
    if down_windows:
        moved = []
        for start, end in down_windows:
            inside = [s for s in history.samples if start <= s.time <= end]
            if inside:
                low, high = min(s.height for s in inside), max(s.height for s in inside)
                if high > low:
                    moved.append({"from": low, "to": high, "window": [round(start, 2), round(end, 2)]})
        inv["no_progress_while_down"] = _inv(not moved, f"height moved while more than t were down: {moved}"
                                             if moved else "no height moved while more than t were down")

    figures["transactions"] = {"invoked": len(ops), "ok": len(acked), "fail": len(failed), "unknown": len(unknown)}
    figures["final_heights"] = {f"node{i}": chains[i].height if i in chains else None for i in sorted(set(running)
                                                                                                       | set(chains))}
    figures.update(timing_figures(history, honest))
    return {"invariants": inv, "figures": figures}


def _inv(passed: bool, detail: str) -> dict[str, Any]:
    return {"passed": bool(passed), "detail": detail}


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "count": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p99_ms": round(p99 * 1000, 1),
            "count": len(ordered)}


def timing_figures(history: History, nodes: list[int] | None = None) -> dict[str, Any]:
    """Latencies, recoveries and stalls; recoveries from the samples of `nodes` (default all:
    a bookkeeper voted out never reaches the heights after its removal)."""
    quiet: list[float] = []
    faulty: list[float] = []
    for op in history.ops:
        latency = op.latency()
        if latency is None or op.complete is None:
            continue
        (faulty if history.in_fault(op.invoke, op.complete) else quiet).append(latency)
    figures: dict[str, Any] = {"latency_quiet": percentiles(quiet), "latency_faulty": percentiles(faulty)}

    samples = sorted((s for s in history.samples if nodes is None or s.node in nodes), key=lambda s: s.time)
    recoveries = []
    for heal in history.heals():
        before = [s.height for s in samples if heal - 1.0 <= s.time <= heal] or \
                 [s.height for s in samples if s.time <= heal] or [0]
        mark = max(before)
        after = [s for s in samples if s.time > heal]
        first = next((s.time - heal for s in after if s.height > mark), None)
        sampled = {s.node for s in after}
        reached = [next((s.time - heal for s in after if s.node == n and s.height >= mark), None) for n in sampled]
        converge = None if not reached or None in reached else max(r for r in reached if r is not None)
        recoveries.append({"heal_t": round(heal, 2), "height_at_heal": mark,
                           "first_final_block_s": _round(first), "convergence_s": _round(converge)})
    figures["recovery"] = recoveries

    # the longest time under load with no new final block anywhere
    marks = {e.action: e.time for e in history.events if e.kind == "note"}
    load_start, load_end = marks.get("load started", 0.0), marks.get("load stopped", float("inf"))
    stall, stall_at, best, since = 0.0, None, -1, None
    for s in samples:
        if s.time < load_start:
            continue
        if s.height > best or s.time > load_end:
            if since is not None and min(s.time, load_end) - since > stall:
                stall, stall_at = min(s.time, load_end) - since, since
            if s.time > load_end:
                break
            best, since = s.height, s.time
    figures["longest_stall_s"] = round(stall, 2)
    figures["longest_stall_from_t"] = _round(stall_at)
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _chain_time(chains: list[NodeChain], clock_drift_ms_max: int) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    problems: list[str] = []
    heads: list[int] = []
    for chain in chains:
        times = [chain.blocks[n]["time"] for n in sorted(chain.blocks)]
        if any(later <= earlier for earlier, later in zip(times, times[1:], strict=False)):
            problems.append(f"node{chain.node}: block time not increasing")
        if times:
            heads.append(times[-1])
            if times[-1] > now_ms + clock_drift_ms_max:
                problems.append(f"node{chain.node}: head dated {times[-1] - now_ms} ms ahead")
    newest = f"newest head {max(heads) - now_ms} ms from the harness clock" if heads else "no blocks"
    return _inv(not problems, "; ".join(problems) if problems else
                f"strictly increasing; {newest} (bound {clock_drift_ms_max} ms)")
