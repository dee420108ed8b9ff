"""Run one scenario end to end: cluster up, workload, warm-up, the fault schedule, heal,
settle, probe, checker, stores verified, everything stopped. Returns the report entry."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import rlp

from chain import Transaction
from client import ClientError, RpcCallError
from consensus import ConsensusConfig
from faults.checker import check, read_chains
from faults.cluster import FaultCluster
from faults.history import History
from faults.scenarios import SCENARIOS, Ctx, Scenario, Schedule
from faults.workload import RATE_SENDERS, RateLoad, Sampler, Workload, chain_facts

# Timing for a loopback cluster: short enough for fast view changes, long enough not to
# suspect a healthy primary on two busy shared cores.
CONSENSUS = {"commit_timeout_ms": 1500, "view_change_timeout_ms": 1500, "delta_ms": 100}
CONVERGE_TIMEOUT_S = 45
PROBE_TIMEOUT_S = 40


def run_scenario(name: str, seed: int, duration: float, workdir: Path | None = None, iterations: int = 50,
                 clients: int = 4, keep: bool = False, log: Any = print, rate: float = 0,
                 schedule: Schedule | None = None) -> dict[str, Any]:
    """`schedule` replaces the scenario's own (a replay's: faults/replay.py)."""
    scenario = SCENARIOS[name]
    if scenario.kind == "fuzz":
        from faults.fuzz import run_fuzz
        return run_fuzz(name, seed, duration, workdir, keep=keep, log=log)
    if scenario.kind == "exhaustion":
        from faults.exhaustion import run_exhaustion
        return run_exhaustion(name, seed, duration, workdir, keep=keep, log=log)
    base = Path(tempfile.mkdtemp(prefix=f"faults-{name}-", dir=workdir))
    try:
        return asyncio.run(_run(scenario, seed, duration, base, iterations, clients, log, rate,
                                schedule or scenario.schedule))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


async def _run(scenario: Scenario, seed: int, duration: float, directory: Path, iterations: int, clients: int,
               log: Any, rate: float, schedule: Schedule) -> dict[str, Any]:
    rng = random.Random(f"{scenario.name}/{seed}")
    began = time.monotonic()
    consensus = {**CONSENSUS, **scenario.consensus}
    cluster = FaultCluster(directory / "cluster", scenario.nodes, consensus, seed=rng.getrandbits(32),
                           unfunded=scenario.unfunded, extra_accounts=RATE_SENDERS if rate else 0,
                           observers=scenario.observers)
    history = History()
    sampler = Sampler(cluster, history)
    # (with the timeline, what a replay needs: faults/replay.py)
    result: dict[str, Any] = {"name": scenario.name, "summary": scenario.summary, "seed": seed,
                              "n": cluster.nodes, "t": cluster.t, "duration_s": duration, "clients": clients,
                              "rate": rate, "iterations": iterations, "passed": False}
    workload: Workload | None = None
    rate_load: RateLoad | None = None
    try:
        cluster.byzantine.update(scenario.byzantine_start)
        cluster.clock_offsets.update(scenario.clock_start)
        cluster.start()
        await cluster.wait_serving()
        await cluster.wait_connected()
        chain_id, token = await chain_facts(cluster)
        ctx = Ctx(cluster, history, rng, duration, iterations, chain_id, token)
        history = ctx.history = History()  # time zero: cluster up
        for node, mode in scenario.byzantine_start.items():
            ctx.extra["byzantine_node"] = node
            history.fault("byzantine from the start", node=node, mode=mode)
        for node, offset_ms in scenario.clock_start.items():
            history.fault("clock skewed from the start", node=node, offset_ms=offset_ms)
        sampler.history = history
        sampler.start()
        warmup = max(2.0, duration * 0.2)
        settle_load = max(3.0, duration * 0.2)
        # Clients ask honest nodes only: a receipt from a Byzantine one may name a block the
        # consortium never finalized (the observer-fork scenario's withheld block).
        workload = Workload(cluster, history, random.Random(rng.getrandbits(64)), clients, chain_id, token,
                            receipt_timeout_s=10, targets=_honest(ctx))
        load_deadline = warmup + duration * 3 + settle_load + 120  # a hard stop if a schedule overruns
        workload.start(load_deadline)
        ctx.loads.append(workload)
        if rate:
            rate_load = RateLoad(cluster, history, random.Random(rng.getrandbits(64)), rate,
                                 cluster.accounts[clients:clients + RATE_SENDERS], chain_id, token,
                                 cluster.accounts[-1].address)
            rate_load.start(load_deadline)
            ctx.loads.append(rate_load)
        history.note("load started", clients=clients, rate=rate)
        await asyncio.sleep(warmup)
        await schedule(ctx)
        await _heal_everything(ctx)
        history.close_windows()
        await asyncio.sleep(settle_load)
        await workload.stop()
        if rate_load is not None:
            await rate_load.stop()
        history.note("load stopped")
        probe_final = await _probe(ctx)
        converged_s = await _converge(cluster, history, honest=_honest(ctx))
        history.note("settled", converged_after_s=converged_s)
        if rate_load is not None:
            await rate_load.resolve(_honest(ctx)[0])
            result["rate_load"] = {"offered_tx_s": rate, "acknowledged": len(rate_load.acked),
                                   "send_lag_max_s": round(rate_load.lag_s_max, 2)}
        await sampler.sample_once()
        await sampler.stop()
        running = [i for i in range(cluster.nodes) if cluster.is_running(i)]
        chains = await read_chains(cluster, running)
        verdict = check(history, chains, _honest(ctx), running, probe_final, ctx.down_windows,
                        consensus.get("clock_drift_ms_max", ConsensusConfig(t=1).clock_drift_ms_max))
        invariants = {**verdict["invariants"], **ctx.extra.get("invariants", {})}
        figures = {**verdict["figures"], **ctx.extra.get("figures", {})}
        if "byzantine_node" in ctx.extra:
            figures["byzantine_node"] = ctx.extra["byzantine_node"]
        await cluster.aclose()
        stores = await asyncio.gather(*(asyncio.to_thread(cluster.verify_store, i)
                                        for i in range(cluster.layout.nodes)))
        invariants["stores_verified"] = {"passed": all(ok for ok, _ in stores),
                                         "detail": "; ".join(f"node{i}: {s}" for i, (_, s) in enumerate(stores))}
        result.update(figures)
        result["invariants"] = invariants
        result["passed"] = all(v["passed"] for v in invariants.values())
        result["timeline"] = history.timeline()
        result["fault_windows"] = [[round(a, 2), round(b, 2)] for a, b in history.fault_windows]
        result["proxy_counters"] = _proxy_counters(cluster)
        (directory / "history.json").write_text(json.dumps({"ops": history.ops_json(), "timeline": history.timeline(),
                                                            "samples": [vars(s) for s in history.samples]}))
    except Exception as exc:  # noqa: BLE001 - a harness failure is a failed scenario with its trace
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        result["timeline"] = history.timeline()
        log(result["traceback"])
    finally:
        if workload is not None:
            await workload.stop()
        if rate_load is not None:
            await rate_load.stop()
        await sampler.stop()
        await cluster.aclose()
        result["logs"] = str(directory / "cluster")
        result["wall_s"] = round(time.monotonic() - began, 1)
    return result


def _honest(ctx: Ctx) -> list[int]:
    """The nodes judged together: not the Byzantine one, nor bookkeepers a membership
    scenario voted out (cut off by design; the scenario checks they hold a prefix)."""
    bad = ctx.extra.get("byzantine_node")
    departed = set(ctx.extra.get("departed", ()))
    return [i for i in range(ctx.cluster.nodes) if i != bad and i not in departed]


async def _heal_everything(ctx: Ctx) -> None:
    """Whatever a schedule left behind: clean links, running, honest nodes."""
    c = ctx.cluster
    left = {"links": c.proxies.describe(), "paused": sorted(c.paused),
            "stopped": [i for i in range(c.layout.nodes) if not c.is_running(i)], "byzantine": dict(c.byzantine),
            "clock_offsets": dict(c.clock_offsets)}
    c.proxies.heal()
    for i in list(c.paused):
        c.resume(i)
    for i in {*c.byzantine, *c.clock_offsets}:
        c.kill(i)
    for i in range(c.layout.nodes):
        if not c.is_running(i):
            c.start_node(i)
            ctx.history.restarts.append((ctx.history.now(), i))
    await c.wait_serving(list(range(c.layout.nodes)))
    if any(left.values()):
        ctx.history.heal("final heal", **{k: v for k, v in left.items() if v})


async def _converge(cluster: FaultCluster, history: History, honest: list[int]) -> float | None:
    """Seconds until every honest node reports the same height and head (None: never)."""
    start = time.monotonic()
    while time.monotonic() - start < CONVERGE_TIMEOUT_S:
        statuses = await asyncio.gather(*(cluster.status(i) for i in honest))
        heads = {(s["height"], s["headHash"]) for s in statuses if s is not None}
        if len(heads) == 1 and all(s is not None for s in statuses):
            return round(time.monotonic() - start, 2)
        await asyncio.sleep(0.25)
    return None


async def _probe(ctx: Ctx) -> bool:
    """Liveness after heal: one fresh transfer must become final."""
    c = ctx.cluster
    key = c.accounts[-4]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROBE_TIMEOUT_S
    sent: list[str] = []
    k = 0
    while loop.time() < deadline:
        node = k % c.nodes
        k += 1
        try:
            if not sent:
                nonce = (await c.call(node, "account_get", "0x" + key.address.hex()))["pendingNonce"]
                tx = Transaction.create(key, chain_id=ctx.chain_id, nonce=nonce, to=ctx.token, method="transfer",
                                        args=[c.accounts[-1].address, 7], gas_limit=1_000_000)
                await c.call(node, "tx_send", "0x" + rlp.encode(tx).hex())
                sent.append("0x" + tx.hash.hex())
                ctx.history.note("probe sent", node=node, tx=sent[0])
            if await c.receipt(node, sent[0], 2000) is not None:
                ctx.history.note("probe final")
                return True
        except RpcCallError:
            await asyncio.sleep(0.5)
        except ClientError:  # no node answered
            await asyncio.sleep(0.2)
    return False


def _proxy_counters(cluster: FaultCluster) -> dict[str, Any]:
    total = {"frames": 0, "dropped": 0, "delayed": 0, "connections": 0}
    for counters in cluster.proxies.counters.values():
        for key in total:
            total[key] += getattr(counters, key)
    return total
