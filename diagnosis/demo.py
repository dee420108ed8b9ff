"""The demonstration run by `node.py demo`: a consortium of live services. `consortium
init` writes a cluster and one agent config per party of the demo's `PLAN` (2 vendors, 3
suppliers with a crew each, 7 devices, 2 owners' smartphones); every party runs as its own
OS process (`node.py agent`, diagnosis/process.py) and reacts to the chain. Nothing is
scripted after the start: each device's simulated sensor feed fails on a seeded schedule
(its `[faults]` table), and what follows — the four flows of Figs. 5-8, the failure paths
and the collusion rounds — happens because the parties react, each by its own policy.

Which device shows what (its type, warranty and fault kinds decide the figure; a party's
`[misbehaviour]` makes a failure path):

| device | sold by | warranty | fault | expected |
| --- | --- | --- | --- | --- |
| meter-A | vendor-A | in | firmware | RMW (Fig. 5); then the policy in force changes its draw |
| relay-A | vendor-A | in | physical damage | SMW (Fig. 6), vendor-A's crew on site |
| meter-B | vendor-B | out | firmware | ROW (Fig. 7), auction |
| relay-B | vendor-B | out | burnt terminal | SOW (Fig. 8), auction, the winner's crew on site |
| meter-C | vendor-A | in | firmware, never confirms | vendor-A reports done; expiry: the requester defaults |
| sensor-B | vendor-B | out | firmware | vendor-B never reveals (forfeit at close); supplier-1 wins, never serves |
| terminal-1..3 | vendor-B | out | firmware | supplier-2 and -3 bid 15 and 16 against 118-125: a ring |

The demo only watches: it reads every agent's `/events` (what it sent, refused and
computed, per request and step), prints one line per step reached, and, once every
request has ended, builds the report (`diagnosis.report`, one per request; Tables 3/4 per
figure) and checks it: every figure completed exactly as `diagnosis.protocol` declares,
every failure path ended through the contract's expiry path it should, the ring flagged
in every round and no honest bidder in any auction, no escrow left and the token supply
unchanged. The same plan runs in one process on the in-process chain in tests.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain.genesis import Genesis
from client import GridClient
from client.contracts import Dsc, Policy, Token, ViewSource
from contracts.addresses import TOKEN
from contracts.dsc_records import COMPLETED, DEFAULTED, FAILED, Request
from diagnosis.agentconfig import DevicePlan, NodePlan, Plan, consortium_init, public_address
from diagnosis.agents import Event
from diagnosis.fleet import Fleet
from diagnosis.overhead import FLOWS, PAPER_TABLE3, PAPER_TABLE4, TABLE3_REASONS, TABLE4_REASONS, gridchain_table3
from diagnosis.phone_app import app_url
from diagnosis.process import EVENTS_PAGE_MAX
from diagnosis.protocol import SYMBOLS
from diagnosis.report import Subject, build
from runtime.cluster import ClusterProcesses, discover

PRICES = {"meter": {"p_min": 10, "p_max": 200}, "relay": {"p_min": 20, "p_max": 400},
          "sensor": {"p_min": 10, "p_max": 200}, "terminal": {"p_min": 10, "p_max": 200}}
# windows by chain time: bids and services must make them on a loaded 2-core box with ~20
# Python processes (a window missed under load ends an auction without a valid bid)
COMMIT_MS, REVEAL_MS, SERVICE_MS = 25_000, 15_000, 90_000
POLL_MS = 5_000  # each agent's fallback poll (events and window timers drive the flows; polling only
# covers a missed notification, and each poll costs proof reads on every open request)
ENDED = (COMPLETED, DEFAULTED, FAILED)
RING = ("supplier-2", "supplier-3")
POLICY_DEVICE = "meter-A"  # its draw after RMW shows the smartphone's policy in force
POWER_SAVING_W = 900


def demo_contract_params() -> dict[str, Any]:
    """Genesis parameters: four device types, windows a loaded 2-core box meets; the
    auction rules are the contract's shipped defaults (docs/auction.md)."""
    return {
        "dsc": {"request_deposit": 100, "bid_deposit": 50, "commit_ms": COMMIT_MS, "reveal_ms": REVEAL_MS,
                "service_ms": SERVICE_MS, "prices": PRICES},
        "credit": {"alpha_percent": 20, "credit_initial": 60},
    }


def _faults(kind: str, seed: int, start_s: float) -> dict[str, Any]:
    # one fault, a seeded exponential time (mean 2 s) after start_s; the starts are spread
    # so that the auctions do not all fall into the same windows of a loaded box
    return {"seed": seed, "kinds": [kind], "start_s": start_s, "mean_interval_s": 2.0, "requests_max": 1}


PLAN = Plan(
    nodes=(
        NodePlan("vendor-A", "vendor", {"meter": 120, "relay": 300, "sensor": 120, "terminal": 120}),
        # no crew, so no relays (their faults need a repair on site)
        NodePlan("vendor-B", "vendor", {"meter": 110, "sensor": 110, "terminal": 125},
                 {"never_reveal": ["sensor"]}, crew=False),
        NodePlan("supplier-1", "supplier", {"meter": 90, "relay": 250, "sensor": 60, "terminal": 118},
                 {"never_serve": ["sensor"]}),
        # the ring: terminals only (no other auction resets its consecutive count), far below the market
        NodePlan("supplier-2", "supplier", {"terminal": 15}, crew=False),
        NodePlan("supplier-3", "supplier", {"terminal": 16}, crew=False),
    ),
    devices=(
        # only meter-A reports its draw (every 2 s): its first report under the new policy is
        # RMW step 8.2; reports of the others would only load the chain
        DevicePlan("meter-A", "meter", "vendor-A", True, "phone-A", _faults("firmware-fault", 1, 2), report_s=2.0),
        DevicePlan("relay-A", "relay", "vendor-A", True, "phone-A", _faults("physical-damage", 2, 2), report_s=0),
        DevicePlan("meter-C", "meter", "vendor-A", True, "phone-A", _faults("firmware-fault", 3, 2),
                   {"never_confirm": True}, report_s=0),
        DevicePlan("meter-B", "meter", "vendor-B", False, "phone-B", _faults("firmware-fault", 4, 2), report_s=0),
        DevicePlan("relay-B", "relay", "vendor-B", False, "phone-B", _faults("burnt-terminal", 5, 8), report_s=0),
        DevicePlan("sensor-B", "sensor", "vendor-B", False, "phone-B", _faults("firmware-fault", 6, 8), report_s=0),
        *(DevicePlan(f"terminal-{i}", "terminal", "vendor-B", False, "phone-B",
                     _faults("firmware-fault", 6 + i, 12 + 4 * i), report_s=0) for i in (1, 2, 3)),
    ),
)
EXPECTED_REQUESTS = sum(int(d.faults["requests_max"]) for d in PLAN.devices)
RING_DEVICES = ("terminal-1", "terminal-2", "terminal-3")  # the three collusion rounds
EXPECTED_FIGURES = {"RMW": ("meter-A",), "SMW": ("relay-A",), "ROW": ("meter-B", *RING_DEVICES), "SOW": ("relay-B",)}


@dataclass
class Observed:
    """Everything the report is built from: the agents' events, the parties' names, and
    what the chain says at the end."""

    events: list[Event]
    names: dict[bytes, str]
    requests: dict[int, Request] = field(default_factory=dict)
    bidder_w: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, Any] = field(default_factory=dict)  # token_check
    policy_draw: list[Any] = field(default_factory=list)  # POLICY_DEVICE's last power report

    def address(self, name: str) -> bytes:
        return next(a for a, n in self.names.items() if n == name)


async def token_check(ledger: ViewSource, genesis_accounts: list[tuple[bytes, int]],
                      parties: list[bytes]) -> dict[str, Any]:
    """Once every request has ended: no escrow is held (escrowed tokens sit in the token
    contract's own balance) and the supply is what genesis created (the sum over every
    account that can hold tokens here: genesis's, the parties', the token contract)."""
    accounts = sorted({a for a, _ in genesis_accounts} | set(parties) | {TOKEN})
    held = await Token.balance_of(ledger, TOKEN)
    supply = sum([await Token.balance_of(ledger, a) for a in accounts])
    genesis_supply = sum(b for _, b in genesis_accounts)
    return {"escrow_held": held, "supply": supply, "genesis_supply": genesis_supply,
            "ok": held == 0 and supply == genesis_supply}


async def observe(ledger: ViewSource, events: list[Event], names: dict[bytes, str],
                  genesis_accounts: list[tuple[bytes, int]]) -> Observed:
    """Read from the chain what the report needs besides the events."""
    observed = Observed(events, names)
    for request_id in sorted({e.request for e in events if e.request}):
        observed.requests[request_id] = await Dsc.request(ledger, request_id)
    for node in PLAN.nodes:
        observed.bidder_w[node.name] = (await Dsc.bidder_state(ledger, observed.address(node.name))).w
    observed.tokens = await token_check(ledger, genesis_accounts, list(names))
    observed.policy_draw = list(await Policy.last_report(ledger, observed.address(POLICY_DEVICE), "power_w") or [])
    return observed


def finished(requests: dict[int, Request], open_requests: int, policy_draw: list[Any]) -> bool:
    """Every request the plan's devices open has ended on chain, no party still owes
    anything for one (a rating, the policy, a report) and the policy in force shows in the
    device's draw."""
    return (len(requests) >= EXPECTED_REQUESTS and all(r.status in ENDED for r in requests.values())
            and open_requests == 0 and policy_draw == [POWER_SAVING_W])


def _named(observed: Observed, hex_address: Any) -> str:
    return observed.names.get(bytes.fromhex(str(hex_address)[2:]), str(hex_address))


def _of_device(reports: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    return [r for r in reports if r["device"] == device]


def _ended(report: dict[str, Any], observed: Observed, name: str) -> list[dict[str, Any]]:
    """The report's `name` events (Defaulted, DepositForfeited, Paid) with parties named."""
    return [{**e, **{k: _named(observed, e[k]) for k in ("party", "to") if k in e}}
            for e in report["ended_by"] if e["name"] == name]


def failure_paths(reports: list[dict[str, Any]], observed: Observed) -> dict[str, Any]:
    """Each failure path ended through the contract path it should, settled by the parties."""
    paths: dict[str, Any] = {}
    sensor = _of_device(reports, "sensor-B")
    forfeits = [f for r in sensor for f in _ended(r, observed, "DepositForfeited")]
    defaults = [d for r in sensor for d in _ended(r, observed, "Defaulted")]
    paths["bidder_never_reveals"] = {
        "expected": "vendor-B commits for sensor-B and never reveals: its bid deposit goes to the payer at close",
        "observed": [f for f in forfeits if f["reason"] == "no-reveal"],
        "ok": any(f["party"] == "vendor-B" and f["to"] == "sensor-B" and f["tx_method"] == "dsc.close"
                  for f in forfeits if f["reason"] == "no-reveal")}
    paths["winner_never_serves"] = {
        "expected": "supplier-1 wins sensor-B's auction and never serves: after the deadline the device expires "
                    "the request, supplier-1 defaults and forfeits its bid deposit to the payer",
        "observed": {"defaulted": defaults, "forfeited": [f for f in forfeits if f["reason"] == "no-completion"]},
        "ok": len(sensor) == 1 and sensor[0]["status"] == DEFAULTED and sensor[0]["winner"] == "supplier-1"
        and any(d["party"] == "supplier-1" and d["reason"] == "no-completion" and d["by"] == "sensor-B"
                for d in defaults)
        and any(f["party"] == "supplier-1" and f["to"] == "sensor-B" for f in forfeits)}
    meter_c = _of_device(reports, "meter-C")
    c_defaults = [d for r in meter_c for d in _ended(r, observed, "Defaulted")]
    c_forfeits = [f for r in meter_c for f in _ended(r, observed, "DepositForfeited")]
    reported = [t["by"] for r in meter_c for t in r["transactions"] if t["method"] == "dsc.report_done"]
    paths["device_never_confirms"] = {
        "expected": "meter-C applies vendor-A's repair and never confirms: vendor-A reports done before the "
                    "deadline, then the expiry makes the silent requester default and its deposit goes to vendor-A",
        "observed": {"defaulted": c_defaults, "forfeited": c_forfeits, "report_done_by": reported},
        "ok": len(meter_c) == 1 and meter_c[0]["status"] == DEFAULTED and reported == ["vendor-A"]
        and any(d["party"] == "meter-C" and d["reason"] == "no-confirmation" for d in c_defaults)
        and any(f["party"] == "meter-C" and f["to"] == "vendor-A" for f in c_forfeits)}
    return paths


def collusion(reports: list[dict[str, Any]], observed: Observed) -> dict[str, Any]:
    """The ring is the suspect class in each of its rounds and its w rose; no honest bidder
    is flagged in any auction and no honest w moved (before: 0 for everyone, from genesis)."""
    rounds = [{"request": r["request"], "suspects": r["suspects"], "winner": r["winner"], "price": r["price"]}
              for r in reports if r["device"] in RING_DEVICES]
    auctions = [{"request": r["request"], "device": r["device"], "suspects": r["suspects"]}
                for r in reports if not r["in_warranty"] and r["bidders"]]
    honest_flagged = sorted({s for a in auctions for s in a["suspects"] if s not in RING})
    checks = {"three_rounds": len(rounds) == 3,
              "ring_flagged_every_round": bool(rounds) and all(set(RING) <= set(r["suspects"]) for r in rounds),
              "no_honest_bidder_flagged": not honest_flagged,
              "ring_w_raised": all(observed.bidder_w[n] == 1 for n in RING),
              "honest_w_unchanged": all(w == 0 for n, w in observed.bidder_w.items() if n not in RING)}
    return {"ring": list(RING), "rounds": rounds, "auctions": auctions, "honest_flagged": honest_flagged,
            "w_after": observed.bidder_w, "checks": checks, "ok": all(checks.values())}


def figures(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure: its requests, each sent exactly what the protocol declares; the Tables 3
    and 4 of its first request beside the paper's."""
    out: dict[str, Any] = {}
    for name in FLOWS:
        mine = [r for r in reports if r["flow"] == name and r["device"] in EXPECTED_FIGURES[name]]
        problems = {r["request"]: r["problems"] for r in mine if not r["ok"]}
        out[name] = {"requests": [r["request"] for r in mine], "devices": sorted({r["device"] for r in mine}),
                     "tables": mine[0]["tables"] if mine else None,
                     "problems": problems, "ok": bool(mine) and not problems
                     and {r["device"] for r in mine} == set(EXPECTED_FIGURES[name])}
    return out


def evaluate(observed: Observed) -> dict[str, Any]:
    """The report, and `ok` only when everything behaved."""
    reports = [build(Subject(rid, request, observed.names), observed.events)
               for rid, request in sorted(observed.requests.items())]
    lost = [r["request"] for r in reports if r["status"] not in ENDED]
    report: dict[str, Any] = {
        "requests": reports, "figures": figures(reports), "failure_paths": failure_paths(reports, observed),
        "collusion": collusion(reports, observed),
        "tokens": observed.tokens,
        "policy_in_force": {"device": POLICY_DEVICE, "last_power_report": observed.policy_draw,
                            "ok": observed.policy_draw == [POWER_SAVING_W]},
        "lost_flows": lost, "request_count": {"expected": EXPECTED_REQUESTS, "observed": len(reports)},
        "refusals": _refusals(observed.events),
        "tables_paper_zhang_fan": {"table3": PAPER_TABLE3, "table4": PAPER_TABLE4},
        "tables_gridchain_by_design": {"table3": {name: gridchain_table3(name) for name in FLOWS}},
        "table_reasons": {"table3": TABLE3_REASONS, "table4": TABLE4_REASONS},
    }
    report["ok"] = (all(f["ok"] for f in report["figures"].values())
                    and all(p["ok"] for p in report["failure_paths"].values())
                    and report["collusion"]["ok"] and report["tokens"]["ok"] and report["policy_in_force"]["ok"]
                    and not lost and len(reports) == EXPECTED_REQUESTS)
    return report


def _refusals(events: list[Event]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        if e.kind == "reject":
            out[e.detail["reason"]] = out.get(e.detail["reason"], 0) + 1
    return out


# the console ---------------------------------------------------------------------------------
Say = Callable[[str], None]


def legend(say: Say) -> None:
    say("  symbols: " + "; ".join(f"{k} = {v}" for k, v in SYMBOLS.items()))
    say("  step labels are the figures' step numbers; n.m is part m of step n (SOW 6.1-6.6 = SMW 1-6, "
        "ROW 6.1-6.5 = RMW 1-5)")
    say("  tables: 'ours' = counted from the agents' events in this run, 'paper' = Zhang & Fan Table 3 "
        "(unicast/broadcast) and Table 4 (T_E/T_M/T_P); '-' = no such row in the paper")


class Progress:
    """One line per (request, step) reached, with who sent what; one per status change."""

    def __init__(self, say: Say, names: dict[bytes, str]) -> None:
        self.say = say
        self.names = names
        self.started = time.monotonic()
        self.status: dict[int, str] = {}

    def _flow(self, request: Request | None) -> str:
        if request is None:
            return "?"
        if request.mode:
            return next(n for n in FLOWS if (n in ("RMW", "SMW")) == request.in_warranty
                        and (n in ("RMW", "ROW")) == (request.mode == "remote"))
        return "RMW/SMW" if request.in_warranty else "ROW/SOW"

    def events(self, new: list[Event], requests: dict[int, Request]) -> None:
        groups: dict[tuple[int, str], list[Event]] = {}
        for e in new:
            if e.request and e.kind in ("unicast", "broadcast", "reject") and (e.step or e.kind != "ops"):
                groups.setdefault((e.request, e.step), []).append(e)
        for (request_id, step), group in sorted(groups.items()):
            request = requests.get(request_id)
            device = self.names.get(request.device, "?") if request else "?"
            what = "; ".join(self._what(e) for e in group)
            self.say(f"  {time.monotonic() - self.started:6.1f}s  #{request_id:<3} {device:<11} "
                     f"{self._flow(request):<8} {step or '-':>4}  {what}")

    @staticmethod
    def _what(e: Event) -> str:
        if e.kind == "unicast":
            return f"{e.agent} -> {e.detail['kind']}"
        if e.kind == "reject":
            return f"{e.agent} refused {e.detail.get('kind', 'a message')} ({e.detail['reason']})"
        state = f"block {e.detail['block']}" if e.detail["status"] == 1 else f"refused: {e.detail.get('error')}"
        return f"{e.agent} tx {e.detail['method']} ({state})"

    def statuses(self, requests: dict[int, Request]) -> None:
        for request_id, request in sorted(requests.items()):
            if self.status.get(request_id) != request.status:
                self.status[request_id] = request.status
                node = self.names.get(request.node, "") if request.node else ""
                self.say(f"  {time.monotonic() - self.started:6.1f}s  #{request_id:<3} "
                         f"{self.names.get(request.device, '?'):<11} {self._flow(request):<8}       "
                         f"== {request.status}" + (f" (node {node}, price {request.price})" if node else ""))


def print_summary(say: Say, report: dict[str, Any]) -> None:
    uni_b, ops = ("unicast", "broadcast"), ("T_E", "T_M", "T_P")

    def cell(row: dict[str, int] | None, keys: tuple[str, ...]) -> str:
        return "-" if row is None else "/".join(str(row[k]) for k in keys)

    for name, figure in report["figures"].items():
        say(f"== {name}: requests {figure['requests']} ok={figure['ok']} {figure['problems'] or ''}")
        if not figure["tables"]:
            continue
        t3, t4 = figure["tables"]["table3"], figure["tables"]["table4"]
        say(f"    {'role':<11}{'ours u/b':>10}{'paper u/b':>11}   {'ours T_E/T_M/T_P':>17}{'paper':>9}")
        for role, row in t3.items():
            cost = t4.get(role)
            ops_text = f"{cell(cost['gridchain'], ops):>17}{cell(cost['paper_zhang_fan'], ops):>9}" if cost else ""
            say(f"    {role:<11}{cell(row['gridchain'], uni_b):>10}{cell(row['paper_zhang_fan'], uni_b):>11}   "
                f"{ops_text}")
    say("== failure paths")
    for name, path in report["failure_paths"].items():
        say(f"  {name}: ok={path['ok']}")
    c = report["collusion"]
    say(f"== collusion: ring {', '.join(c['ring'])}: " + ", ".join(f"{k}={v}" for k, v in c["checks"].items()))
    for r in c["rounds"]:
        say(f"    round: request {r['request']} suspects {r['suspects']} winner {r['winner']} at {r['price']}")
    t = report["tokens"]
    say(f"== tokens: escrow held {t['escrow_held']}, supply {t['supply']} (genesis {t['genesis_supply']}) ok={t['ok']}")
    p = report["policy_in_force"]
    say(f"== policy in force: {p['device']} last power report {p['last_power_report']} ok={p['ok']}")
    say(f"== refused messages by reason: {report['refusals'] or 'none'}; lost flows: {report['lost_flows'] or 'none'}")


# the live run --------------------------------------------------------------------------------
READY_WAIT_S_MAX = 360  # every agent registered and listening (a loaded box starts ~20 Python processes slowly)
RUN_WAIT_S_MAX = 300  # from the devices' start until every request ended
WATCH_INTERVAL_S = 1.0
START_ORDER = ("vendor", "supplier", "crew", "smartphone", "device")  # registrars before the registered


class DemoFailed(Exception):
    """The consortium did not come up (an agent exited, or not ready in time); says what
    and where."""


class TimedOut(DemoFailed):
    """A condition not reached in time."""


class Live:
    """The cluster and the agent processes of one consortium directory, watched."""

    def __init__(self, directory: Path, say: Say) -> None:
        self.directory = directory
        self.say = say
        self.cluster = ClusterProcesses(discover(directory / "cluster"))
        self.fleet = Fleet(directory / "agents")
        self.names = {public_address(c.keys): name for name, c in self.fleet.configs.items()}
        self.events: list[Event] = []
        self.cursors: dict[str, int] = {}
        self.requests: dict[int, Request] = {}
        self.progress = Progress(say, self.names)
        self.urls = [self.cluster.layout.rpc_url(i) for i in range(self.cluster.layout.nodes)]
        self.client = GridClient(self.urls)

    async def start(self) -> None:
        await asyncio.to_thread(self.cluster.start_all)
        await asyncio.to_thread(self.cluster.wait_healthy)
        self.cluster.write_manifest()
        self.say(f"  cluster: {len(self.urls)} bookkeepers at {', '.join(self.urls)}")
        # all at once (their start-up is mostly Python's imports): devices and smartphones wait
        # until their vendor registered them, and a device's first fault comes after it is
        # ready, by when the nodes (founders, in genesis) have long published their endpoints
        names = [n for role in START_ORDER for n in self.fleet.names(role)]
        for name in names:
            self.fleet.start(name)
        await self._until(functools.partial(self._all_ready, names), READY_WAIT_S_MAX, "every agent ready")
        self.say(f"  {len(names)} agents (one process each) registered, endpoints published, listening")

    async def _all_ready(self, names: list[str]) -> bool:
        return all(await asyncio.gather(*(self.fleet.ready(n) for n in names)))

    async def _until(self, check: Callable[[], Any], wait_s: float, what: str) -> None:
        deadline = time.monotonic() + wait_s
        while not await check():
            exited = self.fleet.exited()
            if exited:
                raise DemoFailed(f"agents exited: {exited}\n" + "\n".join(
                    f"== {n} ({self.fleet.log_path(n)})\n{self.fleet.tail(n)}" for n in exited))
            if time.monotonic() > deadline:
                raise TimedOut(f"{what}: not reached in {wait_s:.0f} s")
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def collect(self) -> list[Event]:
        """New events of every agent (every page), and the requests they name re-read."""
        new: list[Event] = []
        for pages in await asyncio.gather(*(self._events_of(name) for name in self.fleet.processes)):
            new.extend(pages)
        self.events.extend(new)
        for request_id in sorted({e.request for e in self.events if e.request}):
            if self.requests.get(request_id) is None or self.requests[request_id].status not in ENDED:
                self.requests[request_id] = await Dsc.request(self.client, request_id)
        return new

    async def _events_of(self, name: str) -> list[Event]:
        new: list[Event] = []
        while True:
            page, cursor = await self.fleet.events(name, self.cursors.get(name, 0))
            self.cursors[name] = cursor
            new.extend(Event.from_json(raw) for raw in page)
            if len(page) < EVENTS_PAGE_MAX:
                return new

    async def _finished(self) -> bool:
        self.progress.events(await self.collect(), self.requests)
        self.progress.statuses(self.requests)
        if len(self.requests) < EXPECTED_REQUESTS or any(r.status not in ENDED for r in self.requests.values()):
            return False
        healths = await asyncio.gather(*(self.fleet.health(n) for n in self.fleet.processes))
        device = next(a for a, n in self.names.items() if n == POLICY_DEVICE)
        draw = list(await Policy.last_report(self.client, device, "power_w") or [])
        return finished(self.requests, sum(len(h["open_requests"]) for h in healths), draw)

    async def watch(self) -> bool:
        """Until every request ended; False when that did not happen in time (the report
        then says which flows are lost)."""
        try:
            await self._until(self._finished, RUN_WAIT_S_MAX, f"{EXPECTED_REQUESTS} requests ended")
        except TimedOut as exc:
            self.say(f"  {exc}")
            return False
        return True

    async def report(self) -> dict[str, Any]:
        await self.collect()
        genesis = Genesis.load(self.directory / "cluster" / "genesis.toml")
        observed = await observe(self.client, self.events, self.names, list(genesis.accounts))
        report = evaluate(observed)
        report["agents"] = {name: await self.fleet.metrics(name) for name in self.fleet.processes}
        report["cluster"] = {"rpc": self.urls, "chain_id": genesis.chain_id, "bookkeepers": len(genesis.bookkeepers),
                             "directory": str(self.directory)}
        report["contract_params"] = demo_contract_params()
        return report

    def endpoints(self) -> dict[str, Any]:
        """Every node's RPC and explorer (GET / on the same port), every agent's URLs and a
        smartphone's app (with its token: diagnosis/phone_app.py)."""
        return {"rpc": self.urls, "explorer": [url.rstrip("/") + "/" for url in self.urls],
                "agents": {n: {"role": c.role, "inbox": self.fleet.url(n, "/sealed"),
                               "health": self.fleet.url(n, "/health"),
                               "metrics": self.fleet.url(n, "/metrics"),
                               "events": self.fleet.url(n, "/events"),
                               "app": app_url(c.state) if c.role == "smartphone" else None}
                           for n, c in self.fleet.configs.items()}}

    async def stop(self) -> None:
        await asyncio.to_thread(self.fleet.stop_all)
        await self.fleet.close()
        await self.client.close()
        await asyncio.to_thread(self.cluster.stop_all)


async def run_demo(directory: Path, *, nodes: int = 3, base_port: int = 0, say: Say = print,
                   keep: Callable[[dict[str, Any], dict[str, Any]], Any] | None = None) -> dict[str, Any]:
    """Write the consortium to `directory`, start it, watch it until every request ended,
    and return the report; `keep` (given the report and the endpoints) runs before
    everything stops."""
    started = time.perf_counter()
    say("== consortium (every party its own process, reacting to the chain)")
    legend(say)
    consortium_init(directory, plan=PLAN, nodes=nodes, base_port=base_port, contracts=demo_contract_params(),
                    poll_ms=POLL_MS)
    say(f"  {len(PLAN.nodes)} diagnosis nodes ({sum(n.crew for n in PLAN.nodes)} with a crew), "
        f"{len(PLAN.devices)} devices, {len(PLAN.phones())} smartphones: configs in {directory / 'agents'}")
    live = Live(directory, say)
    try:
        await live.start()
        setup_s = time.perf_counter() - started
        say("== the devices fail on their seeded schedules; what follows is the parties reacting")
        watch_started = time.perf_counter()
        live.progress.started = time.monotonic()
        ended = await live.watch()
        report = await live.report()
        report["ok"] = report["ok"] and ended
        report["timed_out"] = not ended
        report["timings"] = {"setup_s": round(setup_s, 1), "flows_s": round(time.perf_counter() - watch_started, 1)}
        print_summary(say, report)
        if keep is not None:
            await keep(report, live.endpoints())
    finally:
        await live.stop()
    report["duration_s"] = round(time.perf_counter() - started, 1)
    say(f"== demo {'OK' if report['ok'] else 'NOT OK'} in {report['duration_s']} s")
    return report
