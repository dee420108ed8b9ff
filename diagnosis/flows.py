"""The four maintenance flows of Section V as Figures 5-8 number them, and the DSC auction
they share (IV.B). Steps, actors and actions come from their declaration in
`diagnosis.protocol`; each flow returns a `FlowReport`: its steps with timings, every
unicast and transaction, the per-role counts next to Tables 3 and 4, and the problems
found when what was sent differs from what the declaration says.

Order inside a step: when a sealed message must name the DSC request, the deposit
transaction of step 2 is sent before the step-1 sealing (the request id comes from it).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from client.contracts import Dsc, Policy
from client.errors import TransactionFailed
from contracts.dsc_records import bid_commitment
from crypto.hashing import keccak256
from diagnosis import protocol as proto
from diagnosis.agents import (
    Agent,
    CrewAgent,
    DeviceAgent,
    DiagnosisNodeAgent,
    Event,
    SmartphoneAgent,
    Tally,
    now_ms,
)
from diagnosis.channel import Payload
from diagnosis.overhead import comparison
from diagnosis.protocol import BIDDERS, CREW, DEVICE, PHONE, SUPPLIER, VENDOR, Flow

WINDOW_MARGIN_MS = 150  # block time trails wall time by at most the batch delay
WINDOW_RETRIES_MAX = 40
NO_REVEAL = -1  # a bid that is committed and never revealed


@dataclass
class StepRecord:
    step: str
    actor: str
    action: str
    ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class FlowReport:
    name: str
    flow: Flow | None
    completed: bool = False
    request_id: int = 0
    steps: list[StepRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    total_ms: float = 0.0
    outcome: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def row_of(self, event: Event) -> str:
        """The Table 3 row: the winner's sends are the flow's node row (v_i / nv_i), the
        other bidders share the "bidders" row; the device, smartphone and crew rows are
        their roles."""
        winner = self.outcome.get("winner_address")
        if self.flow is not None and event.role in (VENDOR, SUPPLIER):
            if winner is None or event.agent == self.outcome.get("winner"):
                return self.flow.node_role
            return BIDDERS
        return event.role

    def counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = defaultdict(lambda: {"unicast": 0, "broadcast": 0})
        for e in self.events:
            if e.kind in ("unicast", "broadcast"):
                counts[self.row_of(e)][e.kind] += 1
        return dict(counts)

    def sent(self) -> Counter[tuple[str, str, str]]:
        """(step label, row, kind or method) of every unicast and successful transaction."""
        return Counter((e.step, self.row_of(e), e.detail["kind"] if e.kind == "unicast" else e.detail["method"])
                       for e in self.events if e.kind in ("unicast", "broadcast"))

    def losing_bidders(self) -> int:
        return len(self.outcome.get("bidders", [])) - 1 if self.outcome.get("bidders") else 0

    def problems(self) -> list[str]:
        """Differences between what the run sent and what the protocol declares."""
        if self.flow is None:
            return []
        declared = proto.declared_sends(self.flow, self.losing_bidders())
        sent = self.sent()
        return ([f"sent but not declared: {k} x{n}" for k, n in sorted((sent - declared).items())]
                + [f"declared but not sent: {k} x{n}" for k, n in sorted((declared - sent).items())])

    def ops(self) -> dict[str, dict[str, Any]]:
        """Table 4 view: per role, the operations spent on the device<->node exchange."""
        if self.flow is None:
            return {}
        node_role = self.flow.node_role
        pairs = {DEVICE: node_role, node_role: DEVICE}
        rows: dict[str, dict[str, Any]] = {}
        for e in self.events:
            if e.kind != "ops" or pairs.get(e.role) != e.detail["counterpart"]:
                continue
            row = rows.setdefault(e.role, {"T_E": 0, "T_M": 0, "T_P": 0, "seals": 0, "opens": 0, "ms": 0.0})
            for k in ("T_E", "T_M", "T_P"):
                row[k] += e.detail[k]
            row["seals" if e.detail["operation"] == "seal" else "opens"] += 1
            row["ms"] = round(row["ms"] + e.detail["ms"], 3)
        return rows

    def all_ops(self) -> dict[str, dict[str, Any]]:
        """Every operation per role and counterpart (smartphone and crew messages included)."""
        rows: dict[str, dict[str, Any]] = {}
        for e in self.events:
            if e.kind == "ops":
                row = rows.setdefault(f"{e.role}->{e.detail['counterpart']}", {"T_E": 0, "T_M": 0, "T_P": 0})
                for k in ("T_E", "T_M", "T_P"):
                    row[k] += e.detail[k]
        return rows

    def timings(self) -> dict[str, Any]:
        per_op: dict[str, list[float]] = defaultdict(list)
        for e in self.events:
            if e.kind == "ops":
                per_op[e.detail["operation"]].append(e.detail["ms"])
        return {"flow_ms": round(self.total_ms, 1),
                "crypto_ms": round(sum(sum(v) for v in per_op.values()), 3),
                "per_operation": {op: {"count": len(v), "mean_ms": round(sum(v) / len(v), 3),
                                       "max_ms": round(max(v), 3)} for op, v in sorted(per_op.items())},
                "per_step_ms": {f"{s.step}:{s.actor}": round(s.ms, 1) for s in self.steps}}

    def to_json(self) -> dict[str, Any]:
        txs = [{"by": e.agent, "role": e.role, "step": e.step, **e.detail}
               for e in self.events if e.kind == "broadcast"]
        unicasts = [{"from": e.agent, "role": e.role, "step": e.step, **e.detail}
                    for e in self.events if e.kind == "unicast"]
        report: dict[str, Any] = {
            "name": self.name, "figure": self.flow.figure if self.flow else None, "completed": self.completed,
            "request_id": self.request_id, "error": self.error or None,
            "steps": [{"step": s.step, "actor": s.actor, "action": s.action, "ms": round(s.ms, 1), **s.detail}
                      for s in self.steps],
            "computation_all": self.all_ops(), "timings": self.timings(), "transactions": txs,
            "unicasts": unicasts, "rejections": [{"by": e.agent, **e.detail} for e in self.events
                                                 if e.kind == "reject"],
            "blocks": sorted({t["block"] for t in txs}),
            "outcome": {k: v for k, v in self.outcome.items() if k != "winner_address"},
        }
        if self.flow is not None:
            report["problems"] = self.problems()
            report["tables"] = comparison(self.flow, self.losing_bidders(), self.counts(), self.ops())
        return report


Printer = Any  # a callable taking one line of text, or None for silence


class FlowRun:
    """Records the steps of one run; the events come from the shared Tally. A figure's
    run takes its steps from the protocol declaration; other runs (failure paths,
    collusion rounds) name theirs."""

    def __init__(self, name: str, flow: Flow | None, tally: Tally, printer: Printer = None) -> None:
        self.report = FlowReport(name, flow)
        self.tally = tally
        self.tally.take()
        self._printer = printer
        self._started = time.perf_counter()

    def step(self, label: str, actor: str = "", action: str = "") -> _Step:
        flow = self.report.flow
        if flow is not None:
            declared = flow.step(label)
            actor, action = flow.role(declared.actor), declared.action
        return _Step(self, label, actor, action)

    def finish(self, completed: bool, **outcome: Any) -> FlowReport:
        self.report.completed = completed
        self.report.total_ms = (time.perf_counter() - self._started) * 1000
        self.report.events = self.tally.take()
        self.report.outcome.update(outcome)
        return self.report


class _Step:
    def __init__(self, run: FlowRun, label: str, actor: str, action: str) -> None:
        self.record = StepRecord(label, actor, action)
        self.run = run

    def __enter__(self) -> dict[str, Any]:
        self._t0 = time.perf_counter()
        return self.record.detail

    def __exit__(self, *exc: object) -> None:
        self.record.ms = (time.perf_counter() - self._t0) * 1000
        self.run.report.steps.append(self.record)
        if self.run._printer:
            extra = ", ".join(f"{k}={v}" for k, v in self.record.detail.items() if k in ("block", "blocks", "tx",
                                                                                        "winner", "price", "mode",
                                                                                        "hash", "reason"))
            self.run._printer(f"    [{self.run.report.name} {self.record.step:>4}] {self.record.actor:<10} "
                              f"{self.record.action}" + (f"  ({extra})" if extra else ""))


# shared pieces -----------------------------------------------------------------------------
async def _wait_block_time(target_ms: int) -> None:
    """Sleep until the wall clock (hence the next block's time) has passed `target_ms`."""
    delay = (target_ms + WINDOW_MARGIN_MS - now_ms()) / 1000
    if delay > 0:
        await asyncio.sleep(delay)


async def _window_tx(agent: Agent, call: Any, step: str, too_early: str) -> dict[str, Any]:
    """A transaction that is refused before its window opens: retry (bounded) until it is in."""
    for _ in range(WINDOW_RETRIES_MAX):
        try:
            return await agent.tx(call, step)
        except TransactionFailed as exc:
            if not (exc.receipt.get("error") or "").startswith(too_early):
                raise
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{call.method} still refused with {too_early}")


def _opened_request(receipt: dict[str, Any]) -> int:
    return int(next(e for e in receipt["events"] if e["name"] == "RequestOpened")["fields"]["request"])


@dataclass
class AuctionResult:
    request_id: int
    winner: bytes
    price: int
    closed: dict[str, Any]
    bidders_updated: list[dict[str, Any]]
    forfeited: list[dict[str, Any]]


async def _willing(node: DiagnosisNodeAgent, device: bytes) -> bool:
    """V.B step 2, every fact proven: k_i registered and active, type S in scope, Cred_k
    at least the node's threshold."""
    entry = await node.directory.resolve(device)
    record, _ = await node.directory.device(device)
    if entry is None or not entry.active or entry.role != "device" or record is None:
        return False
    if record.device_type not in node.prices:
        return False
    return await node.directory.credit(device) >= await node.directory.requester_threshold(node.address)


async def _commit(node: DiagnosisNodeAgent, request_id: int, device_type: str, price: int, step: str) -> int:
    """V.B step 3, sealed bid: H(P_i, Cred_i, salt, bidder) with the bid deposit; returns Cred_i."""
    credit = await node.directory.credit(node.address)
    reveal_price = price if price != NO_REVEAL else node.prices[device_type]
    commitment = bid_commitment(request_id, node.address, reveal_price, credit, node.salt(request_id))
    terms = await Dsc.terms(node.ledger, device_type)
    await node.tx(Dsc.commit(request_id, commitment).with_value(terms.bid_deposit), step)
    return credit


async def run_auction(run: FlowRun, device: DeviceAgent, bids: dict[DiagnosisNodeAgent, int],
                      labels: tuple[str, str, str, str] = ("1", "2", "3", "4")) -> AuctionResult:
    """open_request out of warranty; nodes check and decide; sealed bid and public offer; close."""
    s_open, s_verify, s_bid, s_close = labels
    terms = await Dsc.terms(device.ledger, device.device_type)
    with run.step(s_open, DEVICE, "request on the DSC with deposit + P_max") as d:
        receipt = await device.tx(Dsc.open_request(device.address).with_value(terms.request_deposit + terms.p_max),
                                  s_open)
        request_id = _opened_request(receipt)
        d.update(block=receipt["blockNumber"], tx=receipt["transactionHash"], request=request_id,
                 deposit=terms.request_deposit, guarantee=terms.p_max)
    run.report.request_id = request_id
    with run.step(s_verify, "nodes", "check k_i in the state tree: registered, type S in scope, Cred_k") as d:
        willing = await asyncio.gather(*(_willing(n, device.address) for n in bids))
        bidders = {n: p for (n, p), ok in zip(bids.items(), willing, strict=True) if ok}
        d.update(willing=[n.name for n in bidders], declined=[n.name for n in bids if n not in bidders])
    request = await device.request(request_id)
    with run.step(s_bid, "nodes", "sealed bid H(P, Cred, salt) + deposit, then public offer of P_i, Cred_i") as d:
        credits = await asyncio.gather(*(_commit(n, request_id, request.device_type, p, s_bid)
                                         for n, p in bidders.items()))
        await _wait_block_time(request.commit_end_ms)

        async def reveal(node: DiagnosisNodeAgent, price: int, credit: int) -> None:
            if price != NO_REVEAL:
                await _window_tx(node, Dsc.reveal(request_id, price, credit, node.salt(request_id)), s_bid,
                                 "reveal-too-early")

        await asyncio.gather(*(reveal(n, p, c) for (n, p), c in zip(bidders.items(), credits, strict=True)))
        d.update(revealed={n.name: p for n, p in bidders.items() if p != NO_REVEAL},
                 not_revealed=[n.name for n, p in bidders.items() if p == NO_REVEAL])
    with run.step(s_close, "DSC", "close: k-means collusion check, O_i = P_i - d_i, winner, deposits settled") as d:
        await _wait_block_time(request.reveal_end_ms)
        receipt = await _window_tx(device, Dsc.close(request_id), s_close, "auction-not-ended")
        events = receipt["events"]
        closed = next(e for e in events if e["name"] == "AuctionClosed")["fields"]
        winner = bytes.fromhex(closed["winner"][2:])
        names = {n.address: n.name for n in bids}
        d.update(block=receipt["blockNumber"], tx=receipt["transactionHash"],
                 winner=names.get(winner, "none"), price=closed["price"],
                 suspects=[names.get(bytes.fromhex(s[2:]), s) for s in closed["suspects"]],
                 ranking=[[names.get(bytes.fromhex(b[2:]), b), p, o] for b, p, o in closed["ranking"]])
    run.report.outcome["bidders"] = [n.name for n in bidders]
    return AuctionResult(request_id, winner, int(closed["price"]), closed,
                         [e["fields"] for e in events if e["name"] == "BidderUpdated"],
                         [e["fields"] for e in events if e["name"] == "DepositForfeited"])


def _policy_rules() -> list[list[Any]]:
    return [Policy.rule("report", "power_w", ">=", 1500, "set_mode", "power-saving"),
            Policy.rule("report", "temperature_c", ">", 85, "notify", "overheat")]


async def _publish_policy(run: FlowRun, label: str, phone: SmartphoneAgent, device: DeviceAgent) -> None:
    with run.step(label) as d:
        receipt = await phone.tx(Policy.publish(device.address, _policy_rules()), label)
        d.update(block=receipt["blockNumber"], tx=receipt["transactionHash"], rules=len(_policy_rules()))


async def _package(label: str, sender: DeviceAgent, phone: SmartphoneAgent, request_id: int,
                   body: dict[str, Any]) -> None:
    """The maintenance package to the smartphone (sealed) and its hash on chain."""
    sealed = await sender.send(phone.address, Payload(request_id, label, "package", body), PHONE)
    await phone.expect(request_id, "package")
    await sender.log_hash(request_id, label, sealed.hash)


async def _phone_checks(phone: SmartphoneAgent, request_id: int, complete_tx: str) -> dict[str, Any]:
    """The smartphone's proof that the completion is in the chain, and its event
    notification of it."""
    status, header = await phone.ledger.transaction_outcome(bytes.fromhex(complete_tx[2:]))
    event = await phone.notified(lambda e: e["name"] == "ServiceCompleted" and e["fields"]["request"] == request_id)
    return {"proven_status": status, "proven_block": header.number, "ws_event": event["name"]}


def _fault(device: DeviceAgent, symptom: str, component: str) -> dict[str, Any]:
    return {"device": "0x" + device.address.hex(), "type": device.device_type, "symptom": symptom,
            "component": component, "trouble_spot": f"{device.device_type}/{component}",
            "performance": {"error_code": "E42" if symptom == "firmware-fault" else "E17", "uptime_h": 4210}}


# RMW steps 1-5 (Fig. 5), ROW stage I ---------------------------------------------------------
async def _remote_stage(run: FlowRun, request_id: int, device: DeviceAgent, node: DiagnosisNodeAgent,
                        prefix: str, fault: dict[str, Any], deposit_receipt: dict[str, Any] | None) -> Payload:
    node_role = node.role
    with run.step(f"{prefix}1") as d:
        node_key = await device.paillier_of(node.address)
        fault_payload = Payload(request_id, f"{prefix}2", "fault", fault)
        sealed = device.seal_for(fault_payload, node.address, node_key, node_role)
        d["hash"] = "0x" + sealed.hash.hex()[:16]
    with run.step(f"{prefix}2") as d:
        await device.deliver(node.address, sealed, fault_payload, node_role)
        await device.log_hash(request_id, f"{prefix}2", sealed.hash)
        if deposit_receipt:
            d.update(deposit_tx=deposit_receipt["transactionHash"], block=deposit_receipt["blockNumber"])
    with run.step(f"{prefix}3") as d:
        payload, opened = await node.expect(request_id, "fault")
        d["sender_verified"] = "0x" + opened.sender_id.hex()
    with run.step(f"{prefix}4") as d:
        decision = node.diagnose(payload.body)
        await node.tx(Dsc.set_mode(request_id, decision["mode"]), f"{prefix}4")
        reply = await node.send(device.address, Payload(request_id, f"{prefix}4", "repair_policy",
                                                        decision["policy"]), DEVICE)
        await node.log_hash(request_id, f"{prefix}4", reply.hash)
        d.update(mode=decision["mode"], hash="0x" + reply.hash.hex()[:16])
    with run.step(f"{prefix}5") as d:
        policy_payload, _ = await device.expect(request_id, "repair_policy")
        device.apply_repair(policy_payload.body)
        d["firmware"] = device.firmware
    return fault_payload


# SMW steps 1-6 (Fig. 6), SOW stage II --------------------------------------------------------
async def _onsite_stage(run: FlowRun, request_id: int, device: DeviceAgent, node: DiagnosisNodeAgent,
                        phone: SmartphoneAgent, prefix: str, fault: dict[str, Any],
                        deposit_receipt: dict[str, Any] | None) -> dict[str, Any]:
    crew = node.crew
    assert isinstance(crew, CrewAgent)
    node_role = node.role
    with run.step(f"{prefix}1") as d:
        node_key = await device.paillier_of(node.address)
        fault_payload = Payload(request_id, f"{prefix}2", "fault", fault)
        sealed = device.seal_for(fault_payload, node.address, node_key, node_role)
        d["hash"] = "0x" + sealed.hash.hex()[:16]
    with run.step(f"{prefix}2") as d:
        await device.deliver(node.address, sealed, fault_payload, node_role)
        await device.log_hash(request_id, f"{prefix}2", sealed.hash)
        if deposit_receipt:
            d.update(deposit_tx=deposit_receipt["transactionHash"], block=deposit_receipt["blockNumber"])
    with run.step(f"{prefix}3") as d:
        payload, _ = await node.expect(request_id, "fault")
    with run.step(f"{prefix}4") as d:
        decision = node.diagnose(payload.body)
        await node.tx(Dsc.set_mode(request_id, decision["mode"]), f"{prefix}4")
        spot = {"spot": f"substation-7/bay-3/{device.device_type}", "window": "next maintenance slot",
                "crew": "0x" + crew.address.hex()}
        reply = await node.send(device.address, Payload(request_id, f"{prefix}4", "spot", spot), DEVICE)
        await node.log_hash(request_id, f"{prefix}4", reply.hash)
        d.update(mode=decision["mode"], hash="0x" + reply.hash.hex()[:16])
    with run.step(f"{prefix}5") as d:
        spot_payload, _ = await device.expect(request_id, "spot")
        visit_ms = now_ms() + 300
        sealed_t = await device.send(node.address, Payload(request_id, f"{prefix}5", "time", {"t_ms": visit_ms}),
                                     node_role)
        await device.log_hash(request_id, f"{prefix}5", sealed_t.hash)
        d.update(spot=spot_payload.body["spot"], t_ms=visit_ms)
    with run.step(f"{prefix}6") as d:
        time_payload, _ = await node.expect(request_id, "time")
        briefing = {"device": "0x" + device.address.hex(), "fault": payload.body, "policy": decision["policy"],
                    "spot": spot["spot"], "t_ms": time_payload.body["t_ms"]}
        sealed_b = await node.send(crew.address, Payload(request_id, f"{prefix}6", "briefing", briefing), CREW)
        await node.log_hash(request_id, f"{prefix}6", sealed_b.hash)
        notice = {"fault": payload.body["symptom"], "spot": spot["spot"], "t_ms": time_payload.body["t_ms"],
                  "node": "0x" + node.address.hex()}
        sealed_n = await device.send(phone.address, Payload(request_id, f"{prefix}6", "diagnosis_notice", notice),
                                     PHONE)
        await device.log_hash(request_id, f"{prefix}6", sealed_n.hash)
        await phone.expect(request_id, "diagnosis_notice")
        await crew.expect(request_id, "briefing")
        d["crew"] = crew.name
    return {"fault": fault_payload, "briefing": briefing, "t_ms": time_payload.body["t_ms"], "spot": spot["spot"]}


async def _crew_repairs(run: FlowRun, request_id: int, device: DeviceAgent, node: DiagnosisNodeAgent,
                        stage: dict[str, Any]) -> dict[str, Any]:
    """SMW / SOW step 7: at t_k Rep goes on site; the device verifies Rep against the
    registry (a crew of the assigned node) and logs its message."""
    crew = node.crew
    assert isinstance(crew, CrewAgent)
    with run.step("7") as d:
        await asyncio.sleep(max(0, stage["t_ms"] - now_ms()) / 1000)
        sealed = await crew.send(device.address, Payload(request_id, "7", "onsite_repair",
                                                         {"policy": stage["briefing"]["policy"], "at_ms": now_ms()}),
                                 DEVICE)
        repair, _ = await device.expect(request_id, "onsite_repair")
        device.apply_repair(repair.body["policy"])
        await device.log_hash(request_id, "7", sealed.hash)  # a crew sends no transactions: the device logs it
        await node.tx(Dsc.report_done(request_id), "7")
        d["repaired_at_ms"] = repair.body["at_ms"]
    return dict(repair.body)


# RMW (Fig. 5) --------------------------------------------------------------------------------
async def rmw(tally: Tally, device: DeviceAgent, vendor: DiagnosisNodeAgent, phone: SmartphoneAgent,
              printer: Printer = None) -> FlowReport:
    run = FlowRun("RMW", proto.RMW, tally, printer)
    terms = await Dsc.terms(device.ledger, device.device_type)
    fault = _fault(device, "firmware-fault", "metering-firmware")
    receipt = await device.tx(Dsc.open_request(device.address).with_value(terms.request_deposit), "2")
    request_id = run.report.request_id = _opened_request(receipt)
    fault_payload = await _remote_stage(run, request_id, device, vendor, "", fault, receipt)
    with run.step("6") as d:
        done = await device.tx(Dsc.complete(request_id, keccak256(fault_payload.to_bytes())), "6")
        await asyncio.gather(device.tx(Dsc.rate(request_id, 95), "6"), vendor.tx(Dsc.rate(request_id, 90), "6"))
        d.update(block=done["blockNumber"], tx=done["transactionHash"])
    with run.step("7") as d:
        body = {"request": request_id, "node": "0x" + vendor.address.hex(), "mode": "remote",
                "firmware": device.firmware, "ratings": {"by_device": 95, "by_node": 90},
                "complete_tx": done["transactionHash"]}
        await _package("7", device, phone, request_id, body)
        d.update(await _phone_checks(phone, request_id, done["transactionHash"]))
    await _publish_policy(run, "8.1", phone, device)
    with run.step("8.2") as d:
        report = await device.tx(Policy.report("power_w", 1600), "8.2")
        event = await phone.notified(lambda e: e["name"] == "PolicyExecuted"
                                     and e["fields"]["device"] == "0x" + device.address.hex())
        mode, _, version = await Policy.effective(device.ledger, device.address)
        d.update(block=report["blockNumber"], mode=mode, version=version, notified=event["name"])
    return run.finish(True, firmware=device.firmware, policy_mode=mode)


# SMW (Fig. 6) --------------------------------------------------------------------------------
async def smw(tally: Tally, device: DeviceAgent, vendor: DiagnosisNodeAgent, phone: SmartphoneAgent,
              printer: Printer = None) -> FlowReport:
    run = FlowRun("SMW", proto.SMW, tally, printer)
    terms = await Dsc.terms(device.ledger, device.device_type)
    receipt = await device.tx(Dsc.open_request(device.address).with_value(terms.request_deposit), "2")
    request_id = run.report.request_id = _opened_request(receipt)
    fault = _fault(device, "physical-damage", "current-transformer")
    stage = await _onsite_stage(run, request_id, device, vendor, phone, "", fault, receipt)
    repair = await _crew_repairs(run, request_id, device, vendor, stage)
    with run.step("8") as d:
        report = {"repaired_at_ms": repair["at_ms"], "spot": stage["spot"], "module": repair}
        sealed = await device.send(phone.address, Payload(request_id, "8", "maintenance_report", report), PHONE)
        await phone.expect(request_id, "maintenance_report")
        d["hash"] = "0x" + sealed.hash.hex()[:16]
    with run.step("9") as d:
        done = await phone.tx(Dsc.complete(request_id, keccak256(stage["fault"].to_bytes())), "9")
        await asyncio.gather(phone.tx(Dsc.rate(request_id, 92), "9"), vendor.tx(Dsc.rate(request_id, 88), "9"))
        await phone.log_hash(request_id, "9", sealed.hash)
        d.update(block=done["blockNumber"], tx=done["transactionHash"])
        d.update(await _phone_checks(phone, request_id, done["transactionHash"]))
    await _publish_policy(run, "10", phone, device)
    return run.finish(True, firmware=device.firmware)


async def _auction_and_key_exchange(run: FlowRun, device: DeviceAgent, bids: dict[DiagnosisNodeAgent, int]
                                    ) -> tuple[AuctionResult, DiagnosisNodeAgent]:
    """Out of warranty, Figs. 7-8 steps 1-5: the DSC auction, then k_i and the winner read
    each other's identity, Y and Paillier N from the registry through state proofs."""
    auction = await run_auction(run, device, bids)
    winner = next(n for n in bids if n.address == auction.winner)
    run.report.outcome.update(winner=winner.name, winner_address=winner.address)
    with run.step("5") as d:
        await device.paillier_of(winner.address)
        await winner.paillier_of(device.address)
        d["keys_proven"] = 2
    return auction, winner


def _suspects(auction: AuctionResult, bids: dict[DiagnosisNodeAgent, int]) -> list[str]:
    names = {n.address: n.name for n in bids}
    return sorted(names.get(bytes.fromhex(x[2:]), x) for x in auction.closed["suspects"])


# ROW (Fig. 7) --------------------------------------------------------------------------------
async def row(tally: Tally, device: DeviceAgent, phone: SmartphoneAgent, bids: dict[DiagnosisNodeAgent, int],
              printer: Printer = None) -> FlowReport:
    run = FlowRun("ROW", proto.ROW, tally, printer)
    auction, winner = await _auction_and_key_exchange(run, device, bids)
    request_id = auction.request_id
    fault_payload = await _remote_stage(run, request_id, device, winner, "6.",
                                        _fault(device, "firmware-fault", "comm-module"), None)
    with run.step("7") as d:
        done = await device.tx(Dsc.complete(request_id, keccak256(fault_payload.to_bytes())), "7")
        paid = next(e for e in done["events"] if e["name"] == "Paid")["fields"]
        d.update(block=done["blockNumber"], tx=done["transactionHash"], price=paid["amount"])
    with run.step("8"):
        await asyncio.gather(device.tx(Dsc.rate(request_id, 90), "8"), winner.tx(Dsc.rate(request_id, 85), "8"))
    with run.step("9") as d:
        body = {"request": request_id, "node": "0x" + winner.address.hex(), "price": auction.price,
                "ratings": {"by_device": 90, "by_node": 85}, "complete_tx": done["transactionHash"]}
        await _package("9", device, phone, request_id, body)
        d.update(await _phone_checks(phone, request_id, done["transactionHash"]))
    await _publish_policy(run, "10", phone, device)
    return run.finish(True, price=auction.price, suspects=_suspects(auction, bids))


# SOW (Fig. 8) --------------------------------------------------------------------------------
async def sow(tally: Tally, device: DeviceAgent, phone: SmartphoneAgent, bids: dict[DiagnosisNodeAgent, int],
              printer: Printer = None) -> FlowReport:
    run = FlowRun("SOW", proto.SOW, tally, printer)
    auction, winner = await _auction_and_key_exchange(run, device, bids)
    request_id = auction.request_id
    stage = await _onsite_stage(run, request_id, device, winner, phone, "6.",
                                _fault(device, "burnt-terminal", "trip-coil"), None)
    repair = await _crew_repairs(run, request_id, device, winner, stage)
    with run.step("8") as d:
        done = await phone.tx(Dsc.complete(request_id, keccak256(stage["fault"].to_bytes())), "8")
        paid = next(e for e in done["events"] if e["name"] == "Paid")["fields"]
        d.update(block=done["blockNumber"], tx=done["transactionHash"], price=paid["amount"])
    with run.step("9") as d:
        report = {"repaired_at_ms": repair["at_ms"], "spot": stage["spot"], "price": auction.price}
        sealed = await device.send(phone.address, Payload(request_id, "9", "maintenance_report", report), PHONE)
        await phone.expect(request_id, "maintenance_report")
        d["hash"] = "0x" + sealed.hash.hex()[:16]
    with run.step("10") as d:
        await asyncio.gather(phone.tx(Dsc.rate(request_id, 93), "10"), winner.tx(Dsc.rate(request_id, 87), "10"))
        await phone.log_hash(request_id, "10", sealed.hash)
        d.update(await _phone_checks(phone, request_id, done["transactionHash"]))
    await _publish_policy(run, "11", phone, device)
    return run.finish(True, price=auction.price, suspects=_suspects(auction, bids))
