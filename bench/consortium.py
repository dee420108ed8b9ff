"""Scale and soak of the consortium as reacting services (issue 11): a real cluster, a
consortium written by `consortium init`, every party's service (diagnosis/services.py)
with its own RPC ledger, light client, inbox and store, devices failing on a seeded
schedule for `--minutes`, then a drain until every request has ended.

    python -m bench.consortium --devices 100 --nodes 10 --minutes 10 --json OUT

The services run in this one process (one asyncio task each; a process per party is what
`node.py agent` does, and hundreds of Python processes do not fit a small box): this
measures the mechanism and the chain, not OS isolation. `--nodes` counts every node: the
largest odd number of them are bookkeepers (XPaxos n = 2t+1), the rest observers.
`--kill` stops one service of each role halfway and restarts it from its store.

Reports: requests opened and how they ended (completed; `defaulted` through an expiry
path; `failed`: the auction closed without a valid bid), served per minute, fault to
applied repair (p50/p99, with the chain windows — commit + reveal, service deadline —
reported apart), messages refused by reason, stuck deposits (escrows of ended requests
still held: must be 0), lost flows (requests neither completed nor expired after the
drain: must be 0), the token check (no escrow held, supply unchanged since genesis), CPU
seconds and peak memory of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import load_average, machine
from chain.genesis import Genesis
from client.contracts import Dsc, Token
from contracts import dsc_records
from contracts.addresses import DSC
from diagnosis.agentconfig import AgentConfig, consortium_init
from diagnosis.agents import Agent
from diagnosis.demo import demo_contract_params, token_check
from diagnosis.process import build, first_start
from diagnosis.services import DeviceService, Service
from runtime.cluster import ClusterProcesses, discover

FAULTS = (("firmware-fault", "comm-module"), ("physical-damage", "current-transformer"))
DRAIN_S_MAX = 300  # after the fault schedule ends, wait at most this long for open requests
COMPLETED, EXPIRED, NO_VALID_BID = "completed", "defaulted", "failed"
ENDED = (COMPLETED, EXPIRED, NO_VALID_BID)  # the contract's documented ends of a request


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


class Run:
    def __init__(self, directory: Path, configs: list[Path]) -> None:
        self.directory = directory
        self.configs = {p.stem: AgentConfig.load(p) for p in configs}
        self.services: dict[str, Service] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: list[str] = []
        self.bound: dict[str, tuple[Agent, Service]] = {}

    async def bind(self, name: str) -> None:
        """Build the party and open its inbox. Every inbox is bound before the parties start
        talking: their ports lie in the ephemeral range, where this process's own outgoing
        connections (hundreds of them once services run) would otherwise take some."""
        agent, service = build(self.configs[name])
        await agent.start()
        self.bound[name] = (agent, service)

    async def start(self, name: str) -> None:
        if name not in self.bound:
            await self.bind(name)
        agent, service = self.bound.pop(name)
        await first_start(self.configs[name], agent)
        self.services[name] = service
        self.tasks[name] = asyncio.create_task(service.run())

    async def stop(self, name: str) -> None:
        self.tasks.pop(name).cancel()
        service = self.services.pop(name)
        await service.agent.stop()
        service.store.close()

    async def stop_all(self) -> None:
        for name in list(self.tasks):
            await self.stop(name)


async def _faults(run: Run, devices: list[str], minutes: float, rate_per_min: float, seed: int) -> int:
    """Each device fails at exponential intervals (mean 1 / rate) until the end."""
    rng = random.Random(seed)
    end = time.monotonic() + minutes * 60
    reported = 0
    next_at = {name: time.monotonic() + rng.expovariate(rate_per_min / 60) for name in devices}
    while time.monotonic() < end:
        name = min(next_at, key=next_at.__getitem__)
        await asyncio.sleep(max(0.0, next_at[name] - time.monotonic()))
        service = run.services.get(name)
        if isinstance(service, DeviceService):
            kind, component = rng.choice(FAULTS)
            try:
                await service.fail(kind, component)
                reported += 1
            except Exception as exc:  # noqa: BLE001 - counted and the schedule goes on
                print(f"  {name}: fault not reported: {exc}", file=sys.stderr)
        next_at[name] = time.monotonic() + rng.expovariate(rate_per_min / 60)
    return reported


async def _kill_one_of_each_role(run: Run) -> None:
    roles: dict[str, str] = {}
    for name, config in run.configs.items():
        roles.setdefault(config.role, name)
    for name in roles.values():
        await run.stop(name)
        await run.start(name)
        run.restarts.append(name)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="gridchain-consortium-"))
    params = demo_contract_params()
    params["dsc"].update(service_ms=args.service_ms, commit_ms=args.commit_ms, reveal_ms=args.reveal_ms)
    bookkeepers = args.nodes if args.nodes % 2 else args.nodes - 1
    started = time.perf_counter()
    configs = consortium_init(directory, vendors=args.vendors, suppliers=args.suppliers, devices=args.devices,
                              nodes=bookkeepers, contracts=params, paillier_bits=args.paillier_bits)
    layout = discover(directory / "cluster")
    cluster = ClusterProcesses(layout)
    cluster.start_all()
    run = Run(directory, configs)
    try:
        cluster.wait_healthy()
        order = sorted(run.configs, key=lambda n: ("vendor", "supplier", "crew", "smartphone", "device")
                       .index(run.configs[n].role))
        for name in order:
            await run.bind(name)
        for name in order:
            await run.start(name)
        setup_s = time.perf_counter() - started
        devices = [n for n, c in run.configs.items() if c.role == "device"]
        t0 = time.perf_counter()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        schedule = asyncio.create_task(_faults(run, devices, args.minutes, args.fault_rate, args.seed))
        if args.kill:
            await asyncio.sleep(args.minutes * 30)
            await _kill_one_of_each_role(run)
        reported = await schedule
        drained = await _drain(run, devices)
        elapsed_s = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        return await _report(run, devices, args, reported, elapsed_s, setup_s, drained, cpu0, cpu1, bookkeepers)
    finally:
        await run.stop_all()
        cluster.stop_all()


async def _drain(run: Run, devices: list[str]) -> bool:
    deadline = time.monotonic() + DRAIN_S_MAX
    while time.monotonic() < deadline:
        if all(not run.services[d].store.open_requests() for d in devices if d in run.services):
            return True
        await asyncio.sleep(1)
    return False


async def _report(run: Run, devices: list[str], args: argparse.Namespace, reported: int, elapsed_s: float,
                  setup_s: float, drained: bool, cpu0: Any, cpu1: Any, bookkeepers: int) -> dict[str, Any]:
    any_service = next(iter(run.services.values()))
    ledger = any_service.agent.ledger
    outcomes: dict[str, int] = {}
    latencies: dict[str, list[float]] = {"in_warranty": [], "auctioned": []}
    stuck, lost = [], []
    nodes = [s.agent.address for s in run.services.values() if s.agent.role in ("v_i", "nv_i")]
    for name in devices:
        store = run.services[name].store
        for request_id in store.all_requests():
            state = store.request(request_id)
            request = await Dsc.request(ledger, request_id)
            outcomes[request.status] = outcomes.get(request.status, 0) + 1
            if request.status not in ENDED:
                lost.append(request_id)
                continue
            if state.get("repaired_ms") and state.get("fault_ms"):
                key = "in_warranty" if state.get("in_warranty") else "auctioned"
                latencies[key].append((state["repaired_ms"] - state["fault_ms"]) / 1000)
            escrows = [dsc_records.deposit_escrow(request_id), dsc_records.payment_escrow(request_id),
                       *(dsc_records.bid_escrow(request_id, n) for n in nodes)]
            for escrow in escrows:
                if await Token.escrow(ledger, DSC, escrow):
                    stuck.append(request_id)
    refused: dict[str, int] = {}
    rejected: dict[str, int] = {}
    for service in run.services.values():
        for reason, count in service.agent.refusals.items():
            refused[str(reason)] = refused.get(str(reason), 0) + count
        for why, count in service.agent.opener.rejections.items():
            rejected[str(why)] = rejected.get(str(why), 0) + count
    genesis = Genesis.load(run.directory / "cluster" / "genesis.toml")
    tokens = await token_check(ledger, list(genesis.accounts), [s.agent.address for s in run.services.values()])
    ended = sum(outcomes.get(status, 0) for status in ENDED)
    total = sum(outcomes.values())
    return {
        "benchmark": "consortium", "machine": machine(), "load_average_1m": load_average(),
        "config": {"devices": args.devices, "vendors": args.vendors, "suppliers": args.suppliers,
                   "nodes": args.nodes, "bookkeepers": bookkeepers, "minutes": args.minutes,
                   "fault_rate_per_device_per_min": args.fault_rate, "seed": args.seed,
                   "paillier_bits": args.paillier_bits, "kill": args.kill},
        "setup_s": round(setup_s, 1), "run_s": round(elapsed_s, 1), "drained": drained,
        "faults_reported": reported, "requests": total, "outcomes": outcomes,
        "served_per_minute": round(outcomes.get(COMPLETED, 0) / (elapsed_s / 60), 2),
        "ended_percent": round(100 * ended / total, 2) if total else None,
        "fault_to_repair_s": {k: {"p50": _percentile(v, 0.5), "p99": _percentile(v, 0.99), "n": len(v)}
                              for k, v in latencies.items()},
        "chain_windows_s": {"auction_commit_plus_reveal": (args.commit_ms + args.reveal_ms) / 1000,
                            "service_deadline": args.service_ms / 1000},
        "messages_refused": refused, "messages_rejected": rejected,
        "stuck_deposits": len(set(stuck)), "lost_flows": len(lost), "tokens": tokens, "restarted": run.restarts,
        "process": {"cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
                    "max_rss_mb": round(cpu1.ru_maxrss / 1024, 1)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.consortium", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100, help="devices (each with its own smartphone)")
    parser.add_argument("--vendors", type=int, default=2, help="original vendors (each with a crew)")
    parser.add_argument("--suppliers", type=int, default=3, help="non-original suppliers (each with a crew)")
    parser.add_argument("--nodes", type=int, default=10, help="cluster nodes: the largest odd part bookkeepers")
    parser.add_argument("--minutes", type=float, default=10, help="how long devices keep failing")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="faults per device per minute (mean)")
    parser.add_argument("--service-ms", type=int, default=60_000, help="DSC service deadline")
    parser.add_argument("--commit-ms", type=int, default=5_000, help="DSC sealed-bid window")
    parser.add_argument("--reveal-ms", type=int, default=5_000, help="DSC public-offer window")
    parser.add_argument("--seed", type=int, default=7, help="fault schedule seed")
    parser.add_argument("--paillier-bits", type=int, default=2048, help="Paillier modulus of every party")
    parser.add_argument("--kill", action="store_true", help="stop and restart one service of each role halfway")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    if args.nodes < 3 or args.devices < 1 or args.minutes <= 0:
        parser.error("at least 3 nodes, 1 device and a positive duration")
    result = asyncio.run(measure(args))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    ok = result["stuck_deposits"] == 0 and result["lost_flows"] == 0 and result["drained"] and result["tokens"]["ok"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
