"""The four maintenance flows of Section V, step by step as Figures 5-8 number them, and the
DSC auction they share (IV.B). Each flow returns a `FlowReport`: its steps with timings,
every unicast and transaction, the per-role counts next to Tables 3 and 4.

Order inside a step: when a sealed message must name the DSC request, the deposit
transaction of step 2 is sent before the step-1 sealing (the request id comes from it).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from client.contracts import Credit, Dsc, Policy
from client.errors import TransactionFailed
from contracts.dsc_records import bid_commitment
from crypto.hashing import keccak256
from diagnosis.agents import (
    CREW,
    DEVICE,
    PHONE,
    SUPPLIER,
    VENDOR,
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
from diagnosis.overhead import NODE_ROLE, comparison

WINDOW_MARGIN_MS = 150  # block time trails wall time by at most the batch delay
WINDOW_RETRIES_MAX = 40
NO_REVEAL = -1  # a bid that is committed and never revealed
BIDDERS = "bidders"  # Table 3 row of the auction's losing bidders


@dataclass
class StepRecord:
    step: int
    actor: str
    action: str
    ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class FlowReport:
    name: str
    figure: int | None
    completed: bool = False
    request_id: int = 0
    steps: list[StepRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    total_ms: float = 0.0
    outcome: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = defaultdict(lambda: {"unicast": 0, "broadcast": 0})
        for e in self.events:
            if e.kind in ("unicast", "broadcast"):
                counts[self.row_of(e)][e.kind] += 1
        return dict(counts)

    def row_of(self, event: Event) -> str:
        """The Table 3 row: the auction's losing bidders get their own row ("bidders");
        the paper's rows are the failure device, the winning node and the smartphone."""
        winner = self.outcome.get("winner")
        if winner and event.role in (VENDOR, SUPPLIER) and event.agent != winner:
            return BIDDERS
        return event.role

    def ops(self) -> dict[str, dict[str, Any]]:
        """Table 4 view: per role, the operations spent on the device<->node exchange."""
        node_role = NODE_ROLE.get(self.name, "")
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
            "name": self.name, "figure": self.figure, "completed": self.completed, "request_id": self.request_id,
            "error": self.error or None,
            "steps": [{"step": s.step, "actor": s.actor, "action": s.action, "ms": round(s.ms, 1), **s.detail}
                      for s in self.steps],
            "communication": self.counts(), "computation": self.ops(), "computation_all": self.all_ops(),
            "timings": self.timings(), "transactions": txs, "unicasts": unicasts,
            "rejections": [{"by": e.agent, **e.detail} for e in self.events if e.kind == "reject"],
            "blocks": sorted({t["block"] for t in txs}), "outcome": self.outcome,
        }
        if self.name in NODE_ROLE:
            report["paper"] = comparison(self.name, self.counts(), self.ops())
        return report


class FlowRun:
    """Records the steps of one flow; the events come from the shared Tally."""

    def __init__(self, name: str, figure: int | None, tally: Tally, printer: Any = None) -> None:
        self.report = FlowReport(name, figure)
        self.tally = tally
        self.tally.take()
        self._printer = printer
        self._started = time.perf_counter()

    def step(self, number: int, actor: str, action: str) -> _Step:
        return _Step(self, number, actor, action)

    def note(self, text: str) -> None:
        if self._printer:
            self._printer(f"      {text}")

    def finish(self, completed: bool, **outcome: Any) -> FlowReport:
        self.report.completed = completed
        self.report.total_ms = (time.perf_counter() - self._started) * 1000
        self.report.events = self.tally.take()
        self.report.outcome.update(outcome)
        return self.report


class _Step:
    def __init__(self, run: FlowRun, number: int, actor: str, action: str) -> None:
        self.record = StepRecord(number, actor, action)
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
            self.run._printer(f"    [{self.run.report.name} {self.record.step:>2}] {self.record.actor:<10} "
                              f"{self.record.action}" + (f"  ({extra})" if extra else ""))


# shared pieces -----------------------------------------------------------------------------
async def _wait_block_time(agent: Agent, target_ms: int) -> None:
    """Sleep until the wall clock (hence the next block's time) has passed `target_ms`."""
    delay = (target_ms + WINDOW_MARGIN_MS - now_ms()) / 1000
    if delay > 0:
        await asyncio.sleep(delay)


async def _window_tx(agent: Agent, call: Any, step: int, too_early: str) -> dict[str, Any]:
    """A transaction that is refused before its window opens: retry (bounded) until it is in."""
    for _ in range(WINDOW_RETRIES_MAX):
        try:
            return await agent.tx(call, step)
        except TransactionFailed as exc:
            if not (exc.receipt.get("error") or "").startswith(too_early):
                raise
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{call.method} still refused with {too_early}")


@dataclass
class AuctionResult:
    request_id: int
    winner: bytes
    price: int
    closed: dict[str, Any]
    bidders_updated: list[dict[str, Any]]
    forfeited: list[dict[str, Any]]


async def _willing(node: DiagnosisNodeAgent, device: bytes, request_id: int) -> bool:
    """V.B step 2: k_i registered and active (state tree), type S in scope, Cred_k high enough."""
    entry = await node.directory.resolve(device)
    record, _ = await node.directory.device(device)
    if entry is None or not entry.active or entry.role != "device" or record is None:
        return False
    if record.device_type not in node.prices:
        return False
    device_credit = await Credit.credit_of(node.client, device)
    return device_credit >= await Dsc.min_requester_credit(node.client, node.address)


async def _commit(node: DiagnosisNodeAgent, request_id: int, device_type: str, price: int, step: int) -> int:
    """V.B step 3, sealed bid: H(P_i, Cred_i, salt, bidder) with the bid deposit; returns Cred_i."""
    credit = await Credit.credit_of(node.client, node.address)
    reveal_price = price if price != NO_REVEAL else node.prices[device_type]
    commitment = bid_commitment(request_id, node.address, reveal_price, credit, node.salt(request_id))
    terms = await Dsc.terms(node.client, device_type)
    await node.tx(Dsc.commit(request_id, commitment).with_value(terms.bid_deposit), step)
    return credit


async def run_auction(run: FlowRun, device: DeviceAgent, payer: Agent, bids: dict[DiagnosisNodeAgent, int],
                      steps: tuple[int, int, int, int] = (1, 2, 3, 4)) -> AuctionResult:
    """open_request out of warranty; nodes check and decide; sealed bid and public offer; close."""
    s_open, s_verify, s_bid, s_close = steps
    terms = await Dsc.terms(payer.client, device.device_type)
    with run.step(s_open, payer.role, "request on the DSC with deposit + P_max (Y, ID, S, Cred are on chain)") as d:
        receipt = await payer.tx(Dsc.open_request(device.address).with_value(terms.request_deposit + terms.p_max),
                                 s_open)
        opened = next(e for e in receipt["events"] if e["name"] == "RequestOpened")["fields"]
        request_id = int(opened["request"])
        d.update(block=receipt["blockNumber"], tx=receipt["transactionHash"], request=request_id,
                 deposit=terms.request_deposit, guarantee=terms.p_max)
    run.report.request_id = request_id
    with run.step(s_verify, "nodes", "check k_i in the state tree: registered, type S in scope, Cred_k") as d:
        willing = await asyncio.gather(*(_willing(n, device.address, request_id) for n in bids))
        bidders = {n: p for (n, p), ok in zip(bids.items(), willing, strict=True) if ok}
        d.update(willing=[n.name for n in bidders], declined=[n.name for n in bids if n not in bidders])
    request = await payer.request(request_id)
    with run.step(s_bid, "nodes", "sealed bid H(P, Cred, salt) + deposit, then public offer of P_i, Cred_i") as d:
        credits = await asyncio.gather(*(_commit(n, request_id, request.device_type, p, s_bid)
                                         for n, p in bidders.items()))
        await _wait_block_time(payer, request.commit_end_ms)

        async def reveal(node: DiagnosisNodeAgent, price: int, credit: int) -> None:
            if price != NO_REVEAL:
                await _window_tx(node, Dsc.reveal(request_id, price, credit, node.salt(request_id)), s_bid,
                                 "reveal-too-early")

        await asyncio.gather(*(reveal(n, p, c) for (n, p), c in zip(bidders.items(), credits, strict=True)))
        d.update(revealed={n.name: p for n, p in bidders.items() if p != NO_REVEAL},
                 not_revealed=[n.name for n, p in bidders.items() if p == NO_REVEAL])
    with run.step(s_close, "DSC", "close: k-means collusion check, O_i = P_i - d_i, winner, deposits settled") as d:
        await _wait_block_time(payer, request.reveal_end_ms)
        receipt = await _window_tx(payer, Dsc.close(request_id), s_close, "auction-not-ended")
        events = receipt["events"]
        closed = next(e for e in events if e["name"] == "AuctionClosed")["fields"]
        winner = bytes.fromhex(closed["winner"][2:])
        names = {n.address: n.name for n in bids}
        d.update(block=receipt["blockNumber"], tx=receipt["transactionHash"],
                 winner=names.get(winner, "none"), price=closed["price"],
                 suspects=[names.get(bytes.fromhex(s[2:]), s) for s in closed["suspects"]],
                 ranking=[[names.get(bytes.fromhex(b[2:]), b), p, o] for b, p, o in closed["ranking"]])
    return AuctionResult(request_id, winner, int(closed["price"]), closed,
                         [e["fields"] for e in events if e["name"] == "BidderUpdated"],
                         [e["fields"] for e in events if e["name"] == "DepositForfeited"])


def _policy_rules() -> list[list[Any]]:
    return [Policy.rule("report", "power_w", ">=", 1500, "set_mode", "power-saving"),
            Policy.rule("report", "temperature_c", ">", 85, "notify", "overheat")]


async def _publish_policy(run: FlowRun, step: int, phone: SmartphoneAgent, device: DeviceAgent) -> None:
    with run.step(step, PHONE, "adjust and publish the equipment control policy (policy contract)") as d:
        receipt = await phone.tx(Policy.publish(device.address, _policy_rules()), step)
        d.update(block=receipt["blockNumber"], tx=receipt["transactionHash"], rules=len(_policy_rules()))


async def _package(run: FlowRun, step: int, sender: Agent, phone: SmartphoneAgent, request_id: int,
                   body: dict[str, Any], log_by: Agent) -> bytes:
    """The maintenance package to the smartphone (sealed) and its hash on chain."""
    sealed = await sender.send(phone.peer(), Payload(request_id, step, "package", body))
    await phone.expect(request_id, "package")
    receipt = await log_by.log_hash(request_id, step, sealed.hash)
    return bytes.fromhex(receipt["transactionHash"][2:])


async def _phone_checks(phone: SmartphoneAgent, request_id: int, complete_tx: str) -> dict[str, Any]:
    """The smartphone's light-client check that the completion is in a certified block,
    and its WebSocket notification of it."""
    status, header = await phone.light.transaction_outcome(bytes.fromhex(complete_tx[2:]))
    event = await phone.notified(lambda e: e["name"] == "ServiceCompleted" and e["fields"]["request"] == request_id)
    return {"proven_status": status, "proven_block": header.number, "ws_event": event["name"]}


def _fault(device: DeviceAgent, symptom: str, component: str) -> dict[str, Any]:
    return {"device": "0x" + device.address.hex(), "type": device.device_type, "symptom": symptom,
            "component": component, "trouble_spot": f"{device.device_type}/{component}",
            "performance": {"error_code": "E42" if symptom == "firmware-fault" else "E17", "uptime_h": 4210}}


# RMW (Fig. 5) --------------------------------------------------------------------------------
async def rmw(tally: Tally, device: DeviceAgent, vendor: DiagnosisNodeAgent, phone: SmartphoneAgent,
              printer: Any = None) -> FlowReport:
    run = FlowRun("RMW", 5, tally, printer)
    terms = await Dsc.terms(device.client, device.device_type)
    fault = _fault(device, "firmware-fault", "metering-firmware")
    receipt = await device.tx(Dsc.open_request(device.address).with_value(terms.request_deposit), 2)
    request_id = int(next(e for e in receipt["events"] if e["name"] == "RequestOpened")["fields"]["request"])
    run.report.request_id = request_id
    with run.step(1, DEVICE, "encrypt failure details with v_i's Paillier key, sign C||ID_v||ID_k||T (BLS)") as d:
        vendor_key = await device.paillier_of(vendor.address)
        sealed = device.seal_for(Payload(request_id, 2, "fault", fault), vendor.address, vendor_key, vendor.role)
        d["hash"] = "0x" + sealed.hash.hex()[:16]
    with run.step(2, DEVICE, "send C_k||ID_v||ID_k||T||sigma_k to v_i; deposit to the DSC") as d:
        await device.deliver(vendor.peer(), sealed, Payload(request_id, 2, "fault", fault))
        await device.log_hash(request_id, 2, sealed.hash)
        d.update(deposit_tx=receipt["transactionHash"], block=receipt["blockNumber"], request=request_id)
    with run.step(3, vendor.role, "state tree: sold by me, in warranty; verify e(P,sigma)=e(Y,H); decrypt M_k") as d:
        payload, opened = await vendor.expect(request_id, "fault")
        d["sender_verified"] = "0x" + opened.sender_id.hex()
    with run.step(4, vendor.role, "diagnose remote; encrypt repair policy R_k for k_i, sign, send") as d:
        decision = vendor.diagnose(payload.body)
        await vendor.tx(Dsc.set_mode(request_id, decision["mode"]), 4)
        reply = await vendor.send(device.peer(), Payload(request_id, 4, "repair_policy", decision["policy"]))
        await vendor.log_hash(request_id, 4, reply.hash)
        d.update(mode=decision["mode"], hash="0x" + reply.hash.hex()[:16])
    with run.step(5, DEVICE, "verify v_i's signature, decrypt R_k, repair") as d:
        policy_payload, _ = await device.expect(request_id, "repair_policy")
        device.apply_repair(policy_payload.body)
        d["firmware"] = device.firmware
    with run.step(6, "k_i+v_i", "mutual credit; deposit returned by the DSC") as d:
        failure_hash = keccak256(Payload(request_id, 2, "fault", fault).to_bytes())
        done = await device.tx(Dsc.complete(request_id, failure_hash), 6)
        await asyncio.gather(device.tx(Dsc.rate(request_id, 95), 6), vendor.tx(Dsc.rate(request_id, 90), 6))
        d.update(block=done["blockNumber"], tx=done["transactionHash"])
    with run.step(7, DEVICE, "package maintenance info + both credits to the smartphone and the chain") as d:
        body = {"request": request_id, "node": "0x" + vendor.address.hex(), "mode": "remote",
                "firmware": device.firmware, "ratings": {"by_device": 95, "by_node": 90},
                "complete_tx": done["transactionHash"]}
        await _package(run, 7, device, phone, request_id, body, device)
        d.update(await _phone_checks(phone, request_id, done["transactionHash"]))
    await _publish_policy(run, 8, phone, device)
    with run.step(8, DEVICE, "running report crosses the limit: policy executes at block end") as d:
        report = await device.tx(Policy.report("power_w", 1600), 8)
        event = await phone.notified(lambda e: e["name"] == "PolicyExecuted"
                                     and e["fields"]["device"] == "0x" + device.address.hex())
        mode, _, version = await Policy.effective(device.client, device.address)
        d.update(block=report["blockNumber"], mode=mode, version=version, notified=event["name"])
    return run.finish(True, firmware=device.firmware, policy_mode=mode)


# SMW (Fig. 6) --------------------------------------------------------------------------------
async def _onsite_stage(run: FlowRun, request_id: int, device: DeviceAgent, node: DiagnosisNodeAgent,
                        phone: SmartphoneAgent, first: int, fault: dict[str, Any], *,
                        deposit_receipt: dict[str, Any] | None) -> dict[str, Any]:
    """SMW steps 1-8 (SOW stage II, shifted by `first - 1`), returning what step 9 needs."""
    s = first - 1
    crew = node.crew
    assert isinstance(crew, CrewAgent)
    with run.step(s + 1, DEVICE, "encrypt fault message (trouble spot, failure performance) for the node, sign") as d:
        node_key = await device.paillier_of(node.address)
        fault_payload = Payload(request_id, s + 2, "fault", fault)
        sealed = device.seal_for(fault_payload, node.address, node_key, node.role)
        d["hash"] = "0x" + sealed.hash.hex()[:16]
    with run.step(s + 2, DEVICE, "send C_k||ID_v||ID_k||T||sigma_k" + ("; deposit to the DSC" if deposit_receipt
                                                                       else "")) as d:
        await device.deliver(node.peer(), sealed, fault_payload)
        await device.log_hash(request_id, s + 2, sealed.hash)
        if deposit_receipt:
            d.update(deposit_tx=deposit_receipt["transactionHash"], block=deposit_receipt["blockNumber"])
    with run.step(s + 3, node.role, "state tree check; verify sigma_k; decrypt M_k") as d:
        payload, _ = await node.expect(request_id, "fault")
    with run.step(s + 4, node.role, "diagnose on-site; encrypt Spot_k (and the crew's identity) for k_i, sign") as d:
        decision = node.diagnose(payload.body)
        await node.tx(Dsc.set_mode(request_id, decision["mode"]), s + 4)
        spot = {"spot": f"substation-7/bay-3/{device.device_type}", "window": "next maintenance slot",
                "crew": {"id": crew.address.hex(), "bls_key": crew.identity.bls_public.hex(), "name": crew.name}}
        reply = await node.send(device.peer(), Payload(request_id, s + 4, "spot", spot))
        await node.log_hash(request_id, s + 4, reply.hash)
        d.update(mode=decision["mode"], hash="0x" + reply.hash.hex()[:16])
    with run.step(s + 5, DEVICE, "verify, decrypt Spot_k; choose time t_k; encrypt, sign, send") as d:
        spot_payload, _ = await device.expect(request_id, "spot")
        visit_ms = now_ms() + 300
        sealed_t = await device.send(node.peer(), Payload(request_id, s + 5, "time", {"t_ms": visit_ms}))
        await device.log_hash(request_id, s + 5, sealed_t.hash)
        d.update(spot=spot_payload.body["spot"], t_ms=visit_ms)
    with run.step(s + 6, node.role, "verify, decrypt t_k; brief Rep (ID_k||M_k||R_k||Spot_k||t_k||T); k_i tells "
                  "the smartphone") as d:
        time_payload, _ = await node.expect(request_id, "time")
        briefing = {"device": "0x" + device.address.hex(), "fault": payload.body, "policy": decision["policy"],
                    "spot": spot["spot"], "t_ms": time_payload.body["t_ms"]}
        sealed_b = await node.send(crew.peer(), Payload(request_id, s + 6, "briefing", briefing),
                                   receiver_key=crew.identity.paillier_public)
        await node.log_hash(request_id, s + 6, sealed_b.hash)
        notice = {"fault": payload.body["symptom"], "spot": spot["spot"], "t_ms": time_payload.body["t_ms"],
                  "node": "0x" + node.address.hex()}
        sealed_n = await device.send(phone.peer(), Payload(request_id, s + 6, "diagnosis_notice", notice))
        await device.log_hash(request_id, s + 6, sealed_n.hash)
        await phone.expect(request_id, "diagnosis_notice")
        brief, _ = await crew.expect(request_id, "briefing")
        d["crew"] = crew.name
    with run.step(s + 7, CREW, "at the negotiated time Rep goes on site and repairs") as d:
        await asyncio.sleep(max(0, brief.body["t_ms"] - now_ms()) / 1000)
        sealed_r = await crew.send(device.peer(), Payload(request_id, s + 7, "onsite_repair",
                                                          {"policy": brief.body["policy"], "at_ms": now_ms()}))
        repair, _ = await device.expect(request_id, "onsite_repair")
        device.apply_repair(repair.body["policy"])
        await device.log_hash(request_id, s + 7, sealed_r.hash)  # Rep is no member: the device logs it
        await node.tx(Dsc.report_done(request_id), s + 7)
        d["repaired_at_ms"] = repair.body["at_ms"]
    return {"fault": fault_payload, "repair": repair.body, "t_ms": time_payload.body["t_ms"], "spot": spot["spot"]}


async def smw(tally: Tally, device: DeviceAgent, vendor: DiagnosisNodeAgent, phone: SmartphoneAgent,
              printer: Any = None) -> FlowReport:
    run = FlowRun("SMW", 6, tally, printer)
    terms = await Dsc.terms(device.client, device.device_type)
    receipt = await device.tx(Dsc.open_request(device.address).with_value(terms.request_deposit), 2)
    request_id = int(next(e for e in receipt["events"] if e["name"] == "RequestOpened")["fields"]["request"])
    run.report.request_id = request_id
    fault = _fault(device, "physical-damage", "current-transformer")
    stage = await _onsite_stage(run, request_id, device, vendor, phone, 1, fault,
                                deposit_receipt=receipt)
    with run.step(8, DEVICE, "report the maintenance (with its time) to the smartphone") as d:
        report = {"repaired_at_ms": stage["repair"]["at_ms"], "spot": stage["spot"], "module": stage["repair"]}
        sealed = await device.send(phone.peer(), Payload(request_id, 8, "maintenance_report", report))
        await phone.expect(request_id, "maintenance_report")
        d["hash"] = "0x" + sealed.hash.hex()[:16]
    with run.step(9, PHONE, "smartphone (for k_i) and v_i rate each other; deposit back; maintenance message on "
                  "chain") as d:
        failure_hash = keccak256(stage["fault"].to_bytes())
        done = await phone.tx(Dsc.complete(request_id, failure_hash), 9)
        await asyncio.gather(phone.tx(Dsc.rate(request_id, 92), 9), vendor.tx(Dsc.rate(request_id, 88), 9))
        await phone.log_hash(request_id, 9, sealed.hash)
        d.update(block=done["blockNumber"], tx=done["transactionHash"])
        d.update(await _phone_checks(phone, request_id, done["transactionHash"]))
    await _publish_policy(run, 10, phone, device)
    return run.finish(True, firmware=device.firmware)


async def _auction_and_key_exchange(run: FlowRun, device: DeviceAgent, bids: dict[DiagnosisNodeAgent, int]
                                    ) -> tuple[AuctionResult, DiagnosisNodeAgent]:
    """Out of warranty, Figs. 7-8 steps 1-5: the DSC auction, then k_i and the winner read
    each other's identity, Y and Paillier N from the registry through state proofs."""
    auction = await run_auction(run, device, device, bids)
    winner = next(n for n in bids if n.address == auction.winner)
    with run.step(5, "k_i+nv_i", "exchange identity, Y and Paillier N: read from the registry via state proofs") as d:
        await device.paillier_of(winner.address)
        await winner.paillier_of(device.address)
        d["proofs"] = device.light.stats.proofs + winner.light.stats.proofs
    return auction, winner


# ROW (Fig. 7) --------------------------------------------------------------------------------
async def row(tally: Tally, device: DeviceAgent, phone: SmartphoneAgent, bids: dict[DiagnosisNodeAgent, int],
              printer: Any = None) -> FlowReport:
    run = FlowRun("ROW", 7, tally, printer)
    auction, winner = await _auction_and_key_exchange(run, device, bids)
    request_id = auction.request_id
    with run.step(6, "k_i+nv_i", "stage I: RMW steps 1-5 between k_i and the winner") as d:
        fault = _fault(device, "firmware-fault", "comm-module")
        sealed = await device.send(winner.peer(), Payload(request_id, 6, "fault", fault))
        await device.log_hash(request_id, 6, sealed.hash)
        payload, _ = await winner.expect(request_id, "fault")
        decision = winner.diagnose(payload.body)
        await winner.tx(Dsc.set_mode(request_id, decision["mode"]), 6)
        reply = await winner.send(device.peer(), Payload(request_id, 6, "repair_policy", decision["policy"]))
        await winner.log_hash(request_id, 6, reply.hash)
        policy, _ = await device.expect(request_id, "repair_policy")
        device.apply_repair(policy.body)
        d.update(mode=decision["mode"], firmware=device.firmware)
    with run.step(7, "DSC", "completion: pay the winner the agreed price, return the deposits") as d:
        done = await device.tx(Dsc.complete(request_id, keccak256(Payload(request_id, 6, "fault", fault).to_bytes())),
                               7)
        paid = next(e for e in done["events"] if e["name"] == "Paid")["fields"]
        d.update(block=done["blockNumber"], tx=done["transactionHash"], price=paid["amount"])
    with run.step(8, "k_i+nv_i", "assess each other: credits renewed by trimmed mean") as d:
        await asyncio.gather(device.tx(Dsc.rate(request_id, 90), 8), winner.tx(Dsc.rate(request_id, 85), 8))
    with run.step(9, DEVICE, "package maintenance info, credits and payment to the smartphone and the chain") as d:
        body = {"request": request_id, "node": "0x" + winner.address.hex(), "price": auction.price,
                "ratings": {"by_device": 90, "by_node": 85}, "complete_tx": done["transactionHash"]}
        await _package(run, 9, device, phone, request_id, body, device)
        d.update(await _phone_checks(phone, request_id, done["transactionHash"]))
    await _publish_policy(run, 10, phone, device)
    names = {n.address: n.name for n in bids}
    return run.finish(True, winner=winner.name, price=auction.price,
                      suspects=sorted(names.get(bytes.fromhex(x[2:]), x) for x in auction.closed["suspects"]))


# SOW (Fig. 8) --------------------------------------------------------------------------------
async def sow(tally: Tally, device: DeviceAgent, phone: SmartphoneAgent, bids: dict[DiagnosisNodeAgent, int],
              printer: Any = None) -> FlowReport:
    run = FlowRun("SOW", 8, tally, printer)
    auction, winner = await _auction_and_key_exchange(run, device, bids)
    request_id = auction.request_id
    fault = _fault(device, "burnt-terminal", "trip-coil")
    stage = await _onsite_stage(run, request_id, device, winner, phone, 6, fault,
                                deposit_receipt=None)
    # _onsite_stage numbered its steps 6..12 (SMW 1-7 shifted by 5); fold them into Fig. 8's step 6 (stage II)
    # and step 7 (the crew), as the figure does.
    for record in run.report.steps:
        if record.step >= 6 and record.actor != CREW:
            record.detail["smw_step"] = record.step - 5
            record.step = 6
        elif record.actor == CREW:
            record.detail["smw_step"] = record.step - 5
            record.step = 7
    for event in tally.events:
        if event.step >= 6:
            event.detail["smw_step"] = event.step - 5
            event.step = 7 if event.role == CREW or event.step == 12 else 6
    with run.step(8, "DSC", "completion confirmed by the smartphone: pay the agreed price, return deposits") as d:
        done = await phone.tx(Dsc.complete(request_id, keccak256(stage["fault"].to_bytes())), 8)
        paid = next(e for e in done["events"] if e["name"] == "Paid")["fields"]
        d.update(block=done["blockNumber"], tx=done["transactionHash"], price=paid["amount"])
    with run.step(9, DEVICE, "report the maintenance information to the smartphone") as d:
        report = {"repaired_at_ms": stage["repair"]["at_ms"], "spot": stage["spot"], "price": auction.price}
        sealed = await device.send(phone.peer(), Payload(request_id, 9, "maintenance_report", report))
        await phone.expect(request_id, "maintenance_report")
        d["hash"] = "0x" + sealed.hash.hex()[:16]
    with run.step(10, PHONE, "smartphone and nv_i rate each other; maintenance message on chain") as d:
        await asyncio.gather(phone.tx(Dsc.rate(request_id, 93), 10), winner.tx(Dsc.rate(request_id, 87), 10))
        await phone.log_hash(request_id, 10, sealed.hash)
        d.update(await _phone_checks(phone, request_id, done["transactionHash"]))
    await _publish_policy(run, 11, phone, device)
    names = {n.address: n.name for n in bids}
    return run.finish(True, winner=winner.name, price=auction.price,
                      suspects=sorted(names.get(bytes.fromhex(x[2:]), x) for x in auction.closed["suspects"]))


def count_by_method(report: FlowReport) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for e in report.events:
        if e.kind == "broadcast":
            counts[e.role][e.detail["method"]] += 1
    return counts
