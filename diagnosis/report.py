"""What happened to one DSC request, built from the events of every agent that took part
(diagnosis.agents.Event: from the agent processes' `GET /events`, or a shared Tally in one
process) and the request's record on chain: the figure it followed, each declared step
with its transactions (hash, block) and sealed messages, the per-role counts next to the
paper's Tables 3 and 4, timings, and the problems found when what was sent differs from
what `diagnosis.protocol` declares. Pure: no I/O.

Rows of Table 3: the assigned node's sends are the flow's node row (v_i in warranty, nv_i
out of it, whoever won), every other bidder's commit and reveal the "bidders" row; the
device, smartphone and crew rows are their roles. Table 4 counts the device <-> node
exchange only (seal and open of the messages between the two). A message sent again
after a failed delivery counts once (`retransmissions` says how many copies went).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from client import from_hex
from contracts.dsc_records import COMPLETED, Request
from diagnosis import protocol as proto
from diagnosis.agents import Event
from diagnosis.overhead import comparison
from diagnosis.protocol import BIDDERS, DEVICE, SUPPLIER, VENDOR, Flow


@dataclass(frozen=True)
class Subject:
    """The request's record (read from the chain) and the parties' names (address -> name)."""

    request_id: int
    request: Request
    names: dict[bytes, str]

    def name(self, address: bytes) -> str:
        return self.names.get(address, "0x" + address.hex()) if address else ""

    @property
    def flow(self) -> Flow | None:
        """The figure, once the node chose the mode (a request that ended before has none)."""
        return proto.flow_for(self.request.in_warranty, self.request.mode) if self.request.mode else None


def _row(view: Subject, flow: Flow | None, event: Event) -> str:
    if event.role in (VENDOR, SUPPLIER):
        if event.agent == view.name(view.request.node):
            return flow.node_role if flow else event.role
        return BIDDERS
    return event.role


def _successful(event: Event) -> bool:
    return event.kind == "unicast" or (event.kind == "broadcast" and event.detail["status"] == 1)


def _sent(view: Subject, flow: Flow | None, events: list[Event]) -> Counter[tuple[str, str, str]]:
    """(step label, row, kind or method) of every unicast and successful transaction."""
    return Counter((e.step, _row(view, flow, e), e.detail["kind"] if e.kind == "unicast" else e.detail["method"])
                   for e in events if _successful(e))


def _bidders(events: list[Event]) -> list[str]:
    return sorted({e.agent for e in events if e.kind == "broadcast" and e.detail["method"] == "dsc.commit"
                   and e.detail["status"] == 1})


def _counts(view: Subject, flow: Flow | None, events: list[Event]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"unicast": 0, "broadcast": 0})
    for e in events:
        if _successful(e):
            counts[_row(view, flow, e)][e.kind] += 1
    return dict(counts)


def _ops(view: Subject, flow: Flow, events: list[Event]) -> dict[str, dict[str, Any]]:
    """Table 4: per role, the operations of the device <-> node exchange."""
    node_row = flow.node_role
    peer_rows = {view.request.device: DEVICE, view.request.node: node_row}
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.kind != "ops":
            continue
        row, peer = _row(view, flow, e), peer_rows.get(from_hex(e.detail["peer"]))
        if (row, peer) not in ((DEVICE, node_row), (node_row, DEVICE)):
            continue
        cell = rows.setdefault(row, {"T_E": 0, "T_M": 0, "T_P": 0, "seals": 0, "opens": 0, "ms": 0.0})
        for k in ("T_E", "T_M", "T_P"):
            cell[k] += e.detail[k]
        cell["seals" if e.detail["operation"] == "seal" else "opens"] += 1
        cell["ms"] = round(cell["ms"] + e.detail["ms"], 3)
    return rows


def _all_ops(events: list[Event]) -> dict[str, dict[str, int]]:
    """Every operation per role and counterpart (smartphone and crew messages included)."""
    rows: dict[str, dict[str, int]] = {}
    for e in events:
        if e.kind == "ops":
            row = rows.setdefault(f"{e.role}->{e.detail['counterpart']}", {"T_E": 0, "T_M": 0, "T_P": 0})
            for k in ("T_E", "T_M", "T_P"):
                row[k] += e.detail[k]
    return rows


def _timings(events: list[Event], started_ms: int) -> dict[str, Any]:
    per_op: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e.kind == "ops":
            per_op[e.detail["operation"]].append(e.detail["ms"])
    return {"flow_ms": (max(e.at_ms for e in events) - started_ms) if events else 0,
            "crypto_ms": round(sum(sum(v) for v in per_op.values()), 3),
            "per_operation": {op: {"count": len(v), "mean_ms": round(sum(v) / len(v), 3),
                                   "max_ms": round(max(v), 3)} for op, v in sorted(per_op.items())}}


def _step_entry(view: Subject, label: str, events: list[Event], started_ms: int) -> dict[str, Any]:
    mine = [e for e in events if e.step == label and e.kind in ("unicast", "broadcast")]
    entry: dict[str, Any] = {
        "step": label,
        "transactions": [{"by": e.agent, "method": e.detail["method"], "tx": e.detail["tx"],
                          "block": e.detail["block"]} for e in mine if _successful(e) and e.kind == "broadcast"],
        "unicasts": [{"from": e.agent, "to": view.name(from_hex(e.detail["to"])), "kind": e.detail["kind"],
                      "hash": e.detail["hash"]} for e in mine if e.kind == "unicast"]}
    if mine:
        entry["at_ms"] = min(e.at_ms for e in mine) - started_ms
    return entry


def closed_auction(events: list[Event]) -> dict[str, Any] | None:
    """The AuctionClosed event's fields (winner, price, suspects, ranking), from the close
    transaction's receipt."""
    for e in events:
        if e.kind == "broadcast" and e.detail["method"] == "dsc.close" and e.detail["status"] == 1:
            for fired in e.detail.get("events", []):
                if fired["name"] == "AuctionClosed":
                    return dict(fired["fields"])
    return None


def ended_by(events: list[Event]) -> list[dict[str, Any]]:
    """The Defaulted / DepositForfeited / Paid events of the request's transactions."""
    return [{"tx_method": e.detail["method"], "by": e.agent, "name": fired["name"], **fired["fields"]}
            for e in events if e.kind == "broadcast" and e.detail["status"] == 1
            for fired in e.detail.get("events", []) if fired["name"] in ("Defaulted", "DepositForfeited", "Paid")]


def _without_retransmissions(events: list[Event]) -> tuple[list[Event], int]:
    """A sealed message sent again after its delivery failed (no answer in time, the
    receiver down) is one message of the protocol: the same sender, step, kind and
    receiver — and its seal, and the receiver's open of the copy — count once."""
    seen: set[tuple[Any, ...]] = set()
    kept, repeats = [], 0
    for e in events:
        if e.kind in ("unicast", "ops"):
            key = (e.kind, e.agent, e.step, e.detail.get("kind", e.detail.get("operation")),
                   e.detail.get("to", e.detail.get("peer")))
            if key in seen:
                repeats += e.kind == "unicast"
                continue
            seen.add(key)
        kept.append(e)
    return kept, repeats


def build(view: Subject, events: list[Event]) -> dict[str, Any]:
    """The request's report; `ok` only for a completed request whose every send matches the
    declaration and whose every Table 3/4 cell equals our by-design count."""
    events, retransmissions = _without_retransmissions(
        sorted((e for e in events if e.request == view.request_id), key=lambda e: e.at_ms))
    flow = view.flow
    request = view.request
    started_ms = events[0].at_ms if events else 0
    bidders = _bidders(events)
    winner = view.name(request.node)
    losing = len([b for b in bidders if b != winner])
    closed = closed_auction(events)
    names_by_hex = {"0x" + a.hex(): n for a, n in view.names.items()}
    report: dict[str, Any] = {
        "request": view.request_id, "device": view.name(request.device), "device_type": request.device_type,
        "in_warranty": request.in_warranty, "status": request.status, "mode": request.mode,
        "flow": flow.name if flow else None, "figure": flow.figure if flow else None,
        "winner": winner, "price": request.price, "bidders": bidders,
        "suspects": [names_by_hex.get(s, s) for s in closed["suspects"]] if closed else [],
        "ended_by": ended_by(events), "retransmissions": retransmissions,
        "transactions": [{"by": e.agent, "step": e.step, "method": e.detail["method"], "tx": e.detail["tx"],
                          "block": e.detail["block"]} for e in events if e.kind == "broadcast" and _successful(e)],
        "refused_transactions": [{"by": e.agent, "method": e.detail["method"], "error": e.detail.get("error")}
                                 for e in events if e.kind == "broadcast" and e.detail["status"] != 1],
        "rejections": [{"by": e.agent, "step": e.step, **e.detail} for e in events if e.kind == "reject"],
        "computation_all": _all_ops(events), "timings": _timings(events, started_ms),
    }
    labels = [s.label for s in flow.steps] if flow else list(dict.fromkeys(e.step for e in events if e.step))
    report["steps"] = []
    for label in labels:
        entry = _step_entry(view, label, events, started_ms)
        if flow is not None:
            declared = flow.step(label)
            entry = {**entry, "actor": flow.role(declared.actor), "action": declared.action}
        report["steps"].append(entry)
    undeclared = sorted({e.step for e in events if e.step and e.step not in labels})
    problems = [f"events at undeclared step {label}" for label in undeclared]
    if flow is not None:
        declared_sends = proto.declared_sends(flow, losing)
        sent = _sent(view, flow, events)
        problems += [f"sent but not declared: {k} x{n}" for k, n in sorted((sent - declared_sends).items())]
        problems += [f"declared but not sent: {k} x{n}" for k, n in sorted((declared_sends - sent).items())]
        report["tables"] = comparison(flow, losing, _counts(view, flow, events), _ops(view, flow, events))
        for table in ("table3", "table4"):
            for role, row in report["tables"][table].items():
                if row["gridchain"] != row["gridchain_by_design"]:
                    problems.append(f"{table} {role}: {row['gridchain']} vs by design {row['gridchain_by_design']}")
    if request.status != COMPLETED:
        problems.append(f"ended {request.status}")
    report["problems"] = problems
    report["ok"] = not problems
    return report
