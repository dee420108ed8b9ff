"""Scale and soak of the consortium as reacting services (issue 11): a real cluster, a
consortium written by `consortium init`, every party's service (diagnosis/services.py)
with its own RPC ledger, light client, inbox, store and loopback address, devices failing
on a seeded schedule for `--minutes`, then a drain until every request has ended.

    python -m bench.consortium --devices 100 --nodes 10 --minutes 10 --json OUT

The issue runs one OS process per party; ~205 interpreters of ~80 MB each do not fit a
small shared box, so the benchmark groups them, for cost: `--groups K` (default 8) group
processes (bench/consortium_group.py) each serve a share of the parties exactly as
`node.py agent` does (own keys, ledger, light client, store, inbox and routes); `--groups
0` serves them all in this process instead, one asyncio task each, as the first runs did
(one event loop and one process's share of the CPU for 205 parties: on the loaded box its
loop woke minutes late). Each party connects from its own 127.0.x.y address
(diagnosis/agentconfig.py), so every node's per-client limits apply to each party, as they
would across organisations. With `--restart-each-role` (the default) the first party of
each role instead runs as its own `node.py agent` process (diagnosis/fleet.py), and each of
these five is SIGKILLed once during the fault schedule (spread over it) and started again:
it must resume from its store and the chain. Each process's event-loop lag is reported.
`--nodes` counts every node: the largest odd number of them are
bookkeepers (XPaxos n = 2t+1), the rest observers; the parties spread over all of them.

Reports: requests opened and how they ended (completed; `defaulted` through an expiry
path; `failed`: the auction closed without a valid bid), served per minute, fault to
applied repair (p50/p99, with the chain windows — commit + reveal, service deadline —
reported apart), messages refused by reason, stuck deposits (escrows of ended requests
still held: must be 0), lost flows (requests neither completed nor expired after the
drain: must be 0), the token check (no escrow held, supply unchanged since genesis), CPU
seconds and peak memory of this process (all in-process services) and of each agent
process (summed over its lives), and the restarts (when killed, how long until ready).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import cpu_seconds, load_average, machine, peak_rss_mb
from chain.genesis import Genesis
from client.contracts import Dsc, Token
from contracts import dsc_records
from contracts.addresses import DSC
from diagnosis.agentconfig import AgentConfig, consortium_init, public_address
from diagnosis.agents import Agent
from diagnosis.demo import COMMIT_MS, REVEAL_MS, SERVICE_MS, demo_contract_params, token_check
from diagnosis.fleet import REPO, STOP_WAIT_S, Fleet
from diagnosis.ledger import RpcLedger
from diagnosis.lightclient import TrustAnchor
from diagnosis.process import build, first_start
from diagnosis.services import DeviceService, Service
from diagnosis.store import AgentStore
from runtime.cluster import ClusterProcesses, discover

FAULTS = (("firmware-fault", "comm-module"), ("physical-damage", "current-transformer"))
DRAIN_S_MAX = 300  # after the fault schedule ends, wait at most this long for open requests
READY_S_MAX = 600  # an agent process must be ready (registered, serving) this long after its start
COMPLETED, EXPIRED, NO_VALID_BID = "completed", "defaulted", "failed"
ENDED = (COMPLETED, EXPIRED, NO_VALID_BID)  # the contract's documented ends of a request
ENDED_PERCENT_MIN = 99.9  # issue 11's goal: requests that end in a completion or a documented expiry
LAG_TICK_S = 0.5
STARTS_AT_ONCE_MAX = 16  # parties starting (registering, publishing endpoints) at once
ROLES = ("vendor", "supplier", "crew", "smartphone", "device")  # start order: registrars first
GROUPS_DEFAULT = 8  # ~26 parties per process: a loop each, and 8 shares of a loaded box's CPU, not one


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def loop_lag(samples: list[float]) -> None:
    """How late this process's event loop wakes (seconds past a LAG_TICK_S sleep): the
    parties it serves share it, so a lag of seconds says they were starved of CPU."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(LAG_TICK_S)
        samples.append(time.monotonic() - before - LAG_TICK_S)


def lag_summary(samples: list[float]) -> dict[str, float | None]:
    return {"p50": _percentile(samples, 0.5), "p99": _percentile(samples, 0.99),
            "max": round(max(samples), 1) if samples else None}


class Run:
    """The parties: `processes` (names) as agent processes, the others in group processes
    (`grouped`) or in-process services."""

    def __init__(self, directory: Path, processes: set[str]) -> None:
        self.directory = directory
        self.fleet = Fleet(directory / "agents")
        self.configs: dict[str, AgentConfig] = self.fleet.configs
        self.processes = processes
        self.grouped: set[str] = set()
        self.groups: list[subprocess.Popen[bytes]] = []
        self.group_usage: list[dict[str, Any]] = []  # per group: parties, cpu_s, peak rss, loop lag
        any_config = next(iter(self.configs.values()))
        # the benchmark's own reads of the chain (outcomes, escrows, tokens): proven, like a party's
        self.ledger = RpcLedger(any_config.rpc, TrustAnchor.from_genesis(any_config.genesis))
        self.services: dict[str, Service] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.restarts: list[dict[str, Any]] = []
        self.bound: dict[str, tuple[Agent, Service]] = {}
        self.usage: dict[str, dict[str, float]] = {}  # agent process: cpu_s (summed over lives), peak rss
        self.refused: dict[str, int] = {}  # of agent processes' past lives (their counters die with them)
        self.rejected: dict[str, int] = {}
        self.duplicates = 0  # posts of a message already held (a sender asking for its verdict)

    async def bind(self, name: str) -> None:
        """Build the party and open its inbox, before any party starts talking."""
        agent, service = build(self.configs[name])
        await agent.start()
        self.bound[name] = (agent, service)

    async def start(self, name: str) -> None:
        if name in self.processes:
            self.fleet.start(name)
            await self._until_ready(name)
            return
        if name not in self.bound:
            await self.bind(name)
        agent, service = self.bound.pop(name)
        await first_start(self.configs[name], agent)
        self.services[name] = service
        self.tasks[name] = asyncio.create_task(service.run())

    def start_groups(self, names: list[str], groups: int) -> None:
        """`groups` processes, the parties dealt out in turn (each group a mix of roles)."""
        agents = self.directory / "agents"
        for k in range(groups):
            share = names[k::groups]
            if not share:
                continue
            self.grouped.update(share)
            with open(agents / f"group-{k}.log", "ab") as log:  # the process has its own descriptor
                self.groups.append(subprocess.Popen(
                    [sys.executable, "-m", "bench.consortium_group", "--lag-json", str(agents / f"group-{k}.lag.json"),
                     *(str(agents / f"{name}.toml") for name in share)],
                    cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
            self.group_usage.append({"parties": len(share)})

    async def until_grouped_ready(self) -> None:
        for name in sorted(self.grouped):
            await self._until_ready(name)

    async def _until_ready(self, name: str) -> None:
        deadline = time.monotonic() + READY_S_MAX
        while not await self.fleet.ready(name):
            if name in self.fleet.exited() or any(g.poll() is not None for g in self.groups):
                raise RuntimeError(f"agent {name} (or a group process) exited: {self.fleet.tail(name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent {name} not ready in {READY_S_MAX} s: {self.fleet.tail(name)}")
            await asyncio.sleep(0.5)

    async def _account(self, name: str) -> None:
        """Keep what an agent process's life used and counted before it ends."""
        pid = self.fleet.processes[name].pid
        usage = self.usage.setdefault(name, {"cpu_s": 0.0, "peak_rss_mb": 0.0})
        usage["cpu_s"] = round(usage["cpu_s"] + (cpu_seconds(pid) or 0.0), 1)
        usage["peak_rss_mb"] = max(usage["peak_rss_mb"], peak_rss_mb(pid) or 0.0)
        await self._count(name)

    async def _count(self, name: str) -> None:
        """Add a party's refusals, rejections and repeated posts, from its /metrics."""
        try:
            samples = await self.fleet.metrics(name)
        except (OSError, TimeoutError, ValueError) as exc:  # counted as unknown, the run goes on
            print(f"  {name}: metrics not read: {exc}", file=sys.stderr)
            return
        for key, value in samples.items():
            if key.startswith("gridchain_agent_messages_duplicate_total{"):
                self.duplicates += int(value)
            for metric, into in (("messages_refused_total", self.refused), ("messages_rejected_total", self.rejected)):
                if key.startswith(f"gridchain_agent_{metric}{{") and 'reason="' in key:
                    reason = key.split('reason="', 1)[1].split('"', 1)[0]
                    into[reason] = into.get(reason, 0) + int(value)

    async def crash_and_restart(self, name: str) -> None:
        open_at_kill = (await self.fleet.health(name))["open_requests"]  # what it was in the middle of
        await self._account(name)
        killed = time.perf_counter()
        self.fleet.kill(name)  # SIGKILL
        self.fleet.start(name)
        await self._until_ready(name)
        self.restarts.append({"agent": name, "role": self.configs[name].role, "signal": "SIGKILL",
                              "open_requests_at_kill": open_at_kill,
                              "ready_again_s": round(time.perf_counter() - killed, 1)})

    async def fail(self, name: str, kind: str, component: str) -> None:
        service = self.services.get(name)
        if isinstance(service, DeviceService):
            await service.fail(kind, component)
        elif name in self.fleet.processes or name in self.grouped:
            await self.fleet.fail(name, kind, component)
        else:
            raise RuntimeError(f"{name} is not running")

    async def open_requests(self, name: str) -> int:
        if name in self.services:
            return len(self.services[name].store.open_requests())
        return len((await self.fleet.health(name))["open_requests"])

    def store(self, name: str) -> AgentStore:
        """The party's store (an agent process's own file, read beside it: sqlite WAL)."""
        return self.services[name].store if name in self.services else AgentStore(self.configs[name].state)

    async def stop_all(self) -> None:
        for name in list(self.tasks):
            self.tasks.pop(name).cancel()
            service = self.services.pop(name)
            await service.agent.stop()
            service.store.close()
        for name in list(self.fleet.processes):
            if self.fleet.processes[name].poll() is None:
                await self._account(name)
        await self._stop_groups()
        self.fleet.stop_all()
        await self.fleet.close()
        await self.ledger.close()

    async def _stop_groups(self) -> None:
        if not self.groups:
            return
        for name in sorted(self.grouped):
            await self._count(name)
        for group, usage in zip(self.groups, self.group_usage, strict=True):
            usage.update(cpu_s=cpu_seconds(group.pid), peak_rss_mb=peak_rss_mb(group.pid))
            group.send_signal(signal.SIGTERM)
        for k, (group, usage) in enumerate(zip(self.groups, self.group_usage, strict=True)):
            try:
                group.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                group.kill()
                group.wait(STOP_WAIT_S)
            lag = self.directory / "agents" / f"group-{k}.lag.json"
            usage["event_loop_lag_s"] = json.loads(lag.read_text()) if lag.exists() else None
        self.groups.clear()


async def _faults(run: Run, devices: list[str], minutes: float, rate_per_min: float, seed: int) -> dict[str, int]:
    """Each device fails at exponential intervals (mean 1 / rate) until the end. Every report
    runs as its own task (a fault opens a request and waits for its block: awaited in turn,
    one slow block held back every other device's faults); a device's fault while its last
    one is still being reported joins it, as a fault on an open request does in the DSC."""
    rng = random.Random(seed)
    end = time.monotonic() + minutes * 60
    counts = {"reported": 0, "not_reported": 0, "while_reporting": 0}
    reporting: dict[str, asyncio.Task[None]] = {}

    async def report(name: str, kind: str, component: str) -> None:
        try:
            await run.fail(name, kind, component)
            counts["reported"] += 1
        except Exception as exc:  # noqa: BLE001 - counted and the schedule goes on
            counts["not_reported"] += 1
            print(f"  {name}: fault not reported: {type(exc).__name__}: {exc}", file=sys.stderr)

    next_at = {name: time.monotonic() + rng.expovariate(rate_per_min / 60) for name in devices}
    while time.monotonic() < end:
        name = min(next_at, key=next_at.__getitem__)
        await asyncio.sleep(max(0.0, next_at[name] - time.monotonic()))
        kind, component = rng.choice(FAULTS)
        if name in reporting and not reporting[name].done():
            counts["while_reporting"] += 1
        else:
            reporting[name] = asyncio.create_task(report(name, kind, component))
        next_at[name] = time.monotonic() + rng.expovariate(rate_per_min / 60)
    await asyncio.gather(*reporting.values())
    return counts


async def _crash_each_role(run: Run, minutes: float) -> None:
    """One SIGKILL and restart per agent process, spread evenly over the fault schedule."""
    victims = sorted(run.processes, key=lambda n: ROLES.index(run.configs[n].role))
    gap_s = minutes * 60 / (len(victims) + 1)
    for name in victims:
        await asyncio.sleep(gap_s)
        await run.crash_and_restart(name)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="gridchain-consortium-"))
    params = demo_contract_params()
    params["dsc"].update(service_ms=args.service_ms, commit_ms=args.commit_ms, reveal_ms=args.reveal_ms)
    bookkeepers = args.nodes if args.nodes % 2 else args.nodes - 1
    started = time.perf_counter()
    configs = consortium_init(directory, vendors=args.vendors, suppliers=args.suppliers, devices=args.devices,
                              nodes=bookkeepers, observers=args.nodes - bookkeepers, contracts=params,
                              paillier_bits=args.paillier_bits)
    init_s = time.perf_counter() - started
    roles = {AgentConfig.load(p).role: p.stem for p in reversed(configs)}  # the first party of each role
    layout = discover(directory / "cluster")
    cluster = ClusterProcesses(layout)
    cluster.start_all()
    run = Run(directory, set(roles.values()) if args.restart_each_role else set())
    try:
        cluster.wait_healthy()
        order = sorted(run.configs, key=lambda n: ROLES.index(run.configs[n].role))
        others = [n for n in order if n not in run.processes]
        if args.groups:  # they wait for their registrars themselves; the agent processes' may be among them
            run.start_groups(others, args.groups)
        else:
            for name in others:
                await run.bind(name)
        for role in ROLES:  # registrars first; the parties of one role side by side
            await _start_all(run, [n for n in order if run.configs[n].role == role and n not in run.grouped])
        await run.until_grouped_ready()
        setup_s = time.perf_counter() - started
        devices = [n for n in order if run.configs[n].role == "device"]
        t0 = time.perf_counter()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        load_at_start = load_average()
        lags: list[float] = []
        lag_task = asyncio.create_task(loop_lag(lags))
        schedule = asyncio.create_task(_faults(run, devices, args.minutes, args.fault_rate, args.seed))
        if run.processes:
            await _crash_each_role(run, args.minutes)
        faults = await schedule
        load_at_schedule_end = load_average()
        drained = await _drain(run, devices)
        elapsed_s = time.perf_counter() - t0
        lag_task.cancel()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        nodes_cpu = {f"node{i}": cpu_seconds(p.pid) for i, p in cluster.processes.items()}
        result = await _report(run, devices, args, faults["reported"], elapsed_s, setup_s, drained, cpu0, cpu1,
                               bookkeepers)
        result.update(init_s=round(init_s, 1), faults_not_reported=faults["not_reported"],
                      faults_while_reporting=faults["while_reporting"], nodes_cpu_s=nodes_cpu,
                      event_loop_lag_s=lag_summary(lags),
                      load_average_1m_during={"schedule_start": load_at_start, "schedule_end": load_at_schedule_end,
                                              "drained": load_average()})
        await run.stop_all()
        result["process"]["agent_processes_whole_life"] = run.usage
        result["process"]["group_processes"] = run.group_usage
        for reason, count in run.refused.items():
            result["messages_refused"][reason] = result["messages_refused"].get(reason, 0) + count
        for reason, count in run.rejected.items():
            result["messages_rejected"][reason] = result["messages_rejected"].get(reason, 0) + count
        result["messages_posted_again"] += run.duplicates
        return result
    finally:
        await run.stop_all()
        cluster.stop_all()


async def _start_all(run: Run, names: list[str]) -> None:
    """Start these parties, STARTS_AT_ONCE_MAX at a time: one after the other, each waiting
    for its endpoint's block, 200 parties took over 10 minutes on the loaded box."""
    slots = asyncio.Semaphore(STARTS_AT_ONCE_MAX)

    async def one(name: str) -> None:
        async with slots:
            await run.start(name)

    await asyncio.gather(*(one(name) for name in names))


async def _drain(run: Run, devices: list[str]) -> bool:
    deadline = time.monotonic() + DRAIN_S_MAX
    while time.monotonic() < deadline:
        if not sum([await run.open_requests(d) for d in devices]):
            return True
        await asyncio.sleep(1)
    return False


async def _report(run: Run, devices: list[str], args: argparse.Namespace, reported: int, elapsed_s: float,
                  setup_s: float, drained: bool, cpu0: Any, cpu1: Any, bookkeepers: int) -> dict[str, Any]:
    ledger = run.ledger
    outcomes: dict[str, int] = {}
    latencies: dict[str, list[float]] = {"in_warranty": [], "auctioned": []}
    stuck, lost = [], []
    parties = {name: public_address(config.keys) for name, config in run.configs.items()}
    nodes = [parties[n] for n, c in run.configs.items() if c.role in ("vendor", "supplier")]
    for name in devices:
        store = run.store(name)
        states = {request_id: store.request(request_id) for request_id in store.all_requests()}
        if name not in run.services:
            store.close()
        for request_id, state in states.items():
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
    duplicates = sum(service.agent.duplicates for service in run.services.values())
    for service in run.services.values():
        for reason, count in service.agent.refusals.items():
            refused[str(reason)] = refused.get(str(reason), 0) + count
        for why, count in service.agent.opener.rejections.items():
            rejected[str(why)] = rejected.get(str(why), 0) + count
    genesis = Genesis.load(run.directory / "cluster" / "genesis.toml")
    tokens = await token_check(ledger, list(genesis.accounts), list(parties.values()))
    ended = sum(outcomes.get(status, 0) for status in ENDED)
    total = sum(outcomes.values())
    ended_percent = round(100 * ended / total, 2) if total else None
    windows_s = (args.commit_ms + args.reveal_ms) / 1000
    goals = {"ended_percent_min_99.9": ended_percent is not None and ended_percent >= ENDED_PERCENT_MIN,
             "stuck_deposits_0": not stuck, "lost_flows_0": not lost and drained, "tokens_ok": tokens["ok"]}
    return {
        "benchmark": "consortium", "machine": machine(), "load_average_1m": load_average(),
        "config": {"devices": args.devices, "vendors": args.vendors, "suppliers": args.suppliers,
                   "nodes": args.nodes, "bookkeepers": bookkeepers, "minutes": args.minutes,
                   "fault_rate_per_device_per_min": args.fault_rate, "seed": args.seed,
                   "paillier_bits": args.paillier_bits, "restart_each_role": args.restart_each_role,
                   "groups": args.groups,
                   "agent_processes": sorted(run.processes)},
        "setup_s": round(setup_s, 1), "run_s": round(elapsed_s, 1), "drained": drained,
        "faults_reported": reported, "requests": total, "outcomes": outcomes,
        "served_per_minute": round(outcomes.get(COMPLETED, 0) / (elapsed_s / 60), 2),
        "ended_percent": ended_percent, "goals": goals, "goals_met": all(goals.values()),
        "fault_to_repair_s": {k: {"p50": _percentile(v, 0.5), "p99": _percentile(v, 0.99), "n": len(v)}
                              for k, v in latencies.items()},
        # an auctioned repair waits out the commit and reveal windows by chain time: what is left is the work
        "auctioned_beyond_windows_s": {
            "p50": _percentile([x - windows_s for x in latencies["auctioned"]], 0.5),
            "p99": _percentile([x - windows_s for x in latencies["auctioned"]], 0.99)},
        "chain_windows_s": {"auction_commit_plus_reveal": (args.commit_ms + args.reveal_ms) / 1000,
                            "service_deadline": args.service_ms / 1000},
        "messages_refused": refused, "messages_rejected": rejected, "messages_posted_again": duplicates,
        "stuck_deposits": len(set(stuck)), "lost_flows": len(lost), "tokens": tokens, "restarted": run.restarts,
        "process": {"in_process_services": len(run.services),
                    "cpu_s_schedule_and_drain": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
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
    # the demo's windows (diagnosis/demo.py): 5 s + 5 s and a 60 s deadline, met at load 4.5, were missed at
    # load 19-24 (in-warranty repairs defaulted at the deadline), and the box is shared
    parser.add_argument("--service-ms", type=int, default=SERVICE_MS, help="DSC service deadline")
    parser.add_argument("--commit-ms", type=int, default=COMMIT_MS, help="DSC sealed-bid window")
    parser.add_argument("--reveal-ms", type=int, default=REVEAL_MS, help="DSC public-offer window")
    parser.add_argument("--seed", type=int, default=7, help="fault schedule seed")
    parser.add_argument("--paillier-bits", type=int, default=2048, help="Paillier modulus of every party")
    parser.add_argument("--restart-each-role", action=argparse.BooleanOptionalAction, default=True,
                        help="run the first party of each role as its own process, SIGKILL and restart each once")
    parser.add_argument("--groups", type=int, default=GROUPS_DEFAULT,
                        help="processes the parties are grouped in (0: all in this process)")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    if args.nodes < 3 or args.devices < 1 or args.minutes <= 0 or args.groups < 0:
        parser.error("at least 3 nodes, 1 device, a positive duration and no negative number of groups")
    result = asyncio.run(measure(args))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0 if result["goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
