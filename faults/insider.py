"""insider-fuzz: a compromised bookkeeper sends crafted, properly signed consensus and sync
messages (faults/craft.py) to every honest node over real p2p connections, while the
workload runs.

The insider is node0, the primary of two views in three (n = 3): its process is killed
and the fuzzer completes the p2p handshake with its key, so every crafted message passes
the transport's and the replica's signature checks and reaches the deep handlers. It
reads what the nodes send it (their sync status, and the recent final blocks it asks for
by block sync, certificates and finality proofs inside) and polls their view over RPC, so
its mutations stay close to the live state. Afterwards node0 restarts honestly and the
runner checks the suite's invariants (no fork, every acknowledged transaction final,
converged, live, stores verified); this module adds its own: the honest nodes stayed up
through the attack, and no handler raised (gridchain_peer_message_errors_total is 0: a
non-zero count is a bug the fuzzer found, with its traceback in that node's log).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import queue
import socket
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import rlp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from chain import Block, DecodeError, decode
from client import from_hex
from consensus import InvalidMessage, message_from_wire
from consensus.messages import ViewChange
from faults.cluster import FaultCluster
from faults.craft import CONSENSUS_TYPES, SYNC_TYPES, Insider, Situation, crafted
from faults.fuzz import RawLink

if TYPE_CHECKING:
    from faults.scenarios import Ctx

INSIDER = 0
CASES_PER_S = 40  # cases per second of --duration: about what two shared cores send (29/s measured)
CASES_MIN = 300
REFRESH_CASES = 40  # cases per target between two looks at its state
FINALS_KEPT = 4  # recent final blocks replayed and mutated


async def insider_fuzz(ctx: Ctx) -> None:
    c = ctx.cluster
    ctx.kill(INSIDER)
    targets = [i for i in range(c.nodes) if i != INSIDER]
    insider = Insider(INSIDER, c.node_keys[INSIDER], c.nodes, ctx.chain_id)
    cases = max(CASES_MIN, int(ctx.duration * CASES_PER_S))
    ctx.history.fault("insider fuzz", node=INSIDER, cases=cases)
    began = time.monotonic()
    counts = await asyncio.to_thread(fuzz_insider, c, insider, targets, cases, ctx.rng.getrandbits(32),
                                     ctx.duration * 3 + 30)
    fuzz_s = time.monotonic() - began
    statuses = await asyncio.gather(*(c.status(i, timeout_s=10) for i in targets))
    alive = {f"node{i}": c.is_running(i) and s is not None for i, s in zip(targets, statuses, strict=True)}
    metrics = {i: await asyncio.to_thread(scrape_metrics, c.layout.rpc_port(i)) for i in targets}
    await ctx.restart(INSIDER)
    ctx.history.heal("insider restarted honest", node=INSIDER)
    await ctx.sleep(ctx.duration * 0.3)

    errors = {f"node{i}": {k: v for k, v in m.items() if k.startswith("gridchain_peer_message_errors_total")}
              for i, m in metrics.items()}
    rejected = Counter[str]()
    for m in metrics.values():
        for key, value in m.items():
            if key.startswith("gridchain_rejected_messages_total"):
                rejected[key.split('"')[1]] += int(value)
    sent = {k.removeprefix("sent_"): v for k, v in sorted(counts.items()) if k.startswith("sent_")}
    ctx.extra.setdefault("figures", {})["insider_fuzz"] = {
        "cases": sum(sent.values()), "per_type": sent, "seconds": round(fuzz_s, 1),
        "connections": counts["connections"], "closed_by_node": counts["closed_by_node"],
        "frames_received": counts["frames_received"], "rejected_by_reason": dict(rejected.most_common()),
        "handler_errors": errors}
    invariants = ctx.extra.setdefault("invariants", {})
    invariants["alive_under_insider_fuzz"] = {
        "passed": all(alive.values()), "detail": f"honest nodes serving after {sum(sent.values())} cases: {alive}"}
    invariants["no_handler_errors"] = {
        "passed": not any(errors.values()),
        "detail": f"gridchain_peer_message_errors_total {errors}" if any(errors.values())
        else f"no handler raised on {len(targets)} nodes"}
    invariants["every_type_sent"] = {
        "passed": len(sent) == len(CONSENSUS_TYPES + SYNC_TYPES) and min(sent.values()) >= 10,
        "detail": f"cases per type {sent}"}


class Link:
    """One p2p connection to a node, authenticated with the insider's key; a thread reads
    what the node sends (frames it must take, or TCP would stall the node's writer)."""

    def __init__(self, port: int, insider: Insider) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        link = RawLink.open(self.sock, insider.key, insider.chain_id)
        if link is None:
            self.sock.close()
            raise ConnectionError("handshake refused")
        self.link = link
        self.sock.settimeout(None)
        self.status: tuple[int, bytes] | None = None
        # The highest view of a consensus message the node sent us: after one of our
        # SUSPECTs it is ahead of what RPC said a moment ago, and that view's messages are
        # the ones that reach the deep handlers (VC-FINAL, NEW-VIEW while it waits for us).
        self.view = 0
        self.view_changes: dict[int, ViewChange] = {}
        self._n = insider.n
        self.blocks: dict[int, bytes] = {}
        self.received = 0
        self.closed = False
        self._inbox: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            frame = self.link.read()
            if frame is None:
                self.closed = True
                return
            self.received += 1
            view = frame.get("view")
            if type(view) is int and frame.get("type") != "suspect":
                self.view = max(self.view, view)
            if frame.get("type") in ("sync_status", "sync_response", "view_change"):
                self._inbox.put(frame)

    def take_updates(self) -> None:
        while not self._inbox.empty():
            frame = self._inbox.get()
            if frame["type"] == "sync_status":
                self.status = (frame["height"], frame["block_hash"])
                continue
            if frame["type"] == "view_change":
                try:
                    vc = message_from_wire(frame, self._n)
                except InvalidMessage:
                    continue
                assert isinstance(vc, ViewChange)
                self.view_changes[vc.sender] = vc
                continue
            for raw in frame["blocks"]:
                try:
                    self.blocks[decode(raw, Block).number] = raw
                except DecodeError:
                    continue
            for height in sorted(self.blocks)[:-FINALS_KEPT]:
                del self.blocks[height]

    def send(self, wire: dict[str, Any]) -> bool:
        try:
            self.link.send(wire)
            return True
        except OSError:
            self.closed = True
            return False

    def close(self) -> None:
        self.sock.close()


def fuzz_insider(cluster: FaultCluster, insider: Insider, targets: list[int], cases: int, seed: int,
                 budget_s: float) -> Counter[str]:
    counts: Counter[str] = Counter()
    links: dict[int, Link] = {}
    situations: dict[int, Situation] = {}
    deadline = time.monotonic() + budget_s

    def link(target: int) -> Link | None:
        current = links.get(target)
        if current is not None and not current.closed:
            return current
        if current is not None:
            counts["closed_by_node"] += 1
            current.close()
        try:
            links[target] = Link(cluster.layout.p2p_port(target), insider)
        except OSError:
            counts["connect_failed"] += 1
            return None
        counts["connections"] += 1
        return links[target]

    def refresh(target: int, connection: Link) -> Situation:
        connection.take_updates()
        status = _rpc_status(cluster.layout.rpc_port(target))
        height = status["height"] if status else (connection.status or (0, b""))[0]
        # Recent final blocks, by block sync, as any bookkeeper may ask: real certificates to replay.
        connection.send({"type": "sync_request", "from_height": max(1, height - FINALS_KEPT + 1),
                         "count": FINALS_KEPT})
        head = connection.blocks.get(height)
        header = rlp.decode(head, Block).header if head is not None else None
        return Situation(view=status["view"] if status and status["view"] is not None else 0, height=height,
                         head_hash=from_hex(status["headHash"]) if status else bytes(32),
                         state_root=header.state_root if header is not None else bytes(32),
                         finals=dict(connection.blocks), timestamp_ms=header.timestamp_ms if header else 0)

    @hypothesis_seed(seed)
    @settings(max_examples=cases, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def case(data: st.DataObject) -> None:
        if time.monotonic() > deadline:
            counts["skipped_after_budget"] += 1
            return
        target = data.draw(st.sampled_from(targets))
        connection = link(target)
        if connection is None:
            return
        counts[f"cases_{target}"] += 1
        if target not in situations or counts[f"cases_{target}"] % REFRESH_CASES == 0:
            situations[target] = refresh(target, connection)
        connection.take_updates()
        situations[target].view = max(situations[target].view, connection.view)
        situations[target].view_changes = dict(connection.view_changes)
        name, wire = data.draw(crafted(insider, situations[target]))
        if connection.send(wire):
            counts[f"sent_{name.split('/')[0]}"] += 1

    try:
        case()
    finally:
        for connection in links.values():
            counts["frames_received"] += connection.received
            connection.close()
    return counts


def _rpc_status(port: int) -> dict[str, Any] | None:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("POST", "/", body=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "chain_status"}),
                           headers={"Content-Type": "application/json"})
        reply = json.loads(connection.getresponse().read())
        connection.close()
        result: dict[str, Any] | None = reply.get("result")
        return result
    except (OSError, ValueError, http.client.HTTPException):
        return None


def scrape_metrics(port: int) -> dict[str, float]:
    """Prometheus text of one node: {'name{labels}': value}."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
        connection.close()
    except (OSError, http.client.HTTPException):
        return {}
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values

