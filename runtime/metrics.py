"""Prometheus metrics of one node (prometheus_client, one registry per node so that several
nodes in one test process do not collide). Served as text on GET /metrics."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from consensus.errors import DecodeReason, RejectReason
from runtime import logfilter
from runtime.logfilter import SuppressedCollector

if TYPE_CHECKING:
    from chain.store import StorageUsage
    from runtime.node import Node



class PeerRefusal(StrEnum):
    """Work a peer sent or asked for that the node dropped unread: over one of its budgets."""

    RELAY_RATE = "relay-rate"  # over the relay's announce/ask/answer budget (runtime/txrelay.py)
    RELAY_BACKLOG_FULL = "relay-backlog-full"  # the oldest relayed transaction made room for a new one
    SNAPSHOT_RATE = "snapshot-rate"  # over the budget of snapshot parts served to one peer


# The label of gridchain_rejected_messages: a peer message that did not decode, that the
# replica dropped, or that the node dropped over a budget. Three enums, one bounded set of
# values (the same spelling for the same reason: "unknown-sender" is one label), and only
# `message_rejected` writes it, so no free text can reach it.
MessageRejection = DecodeReason | RejectReason | PeerRefusal
MESSAGE_REJECTIONS = frozenset(str(r) for kind in (DecodeReason, RejectReason, PeerRefusal) for r in kind)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STALL_PROBE_S = 0.02  # the loop-stall probe sleeps this long and measures how late it wakes


class NodeMetrics:
    def __init__(self, node_name: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"node": node_name}
        r = self.registry
        self.height = Gauge("gridchain_height", "Final block height", ["node"], registry=r).labels(**labels)
        self.view = Gauge("gridchain_view", "Current XPaxos view", ["node"], registry=r).labels(**labels)
        self.epoch = Gauge("gridchain_epoch", "First height of the bookkeeper set in force (governance)", ["node"],
                           registry=r).labels(**labels)
        self.view_changes = Counter("gridchain_view_changes", "View changes entered", ["node"],
                                    registry=r).labels(**labels)
        self.suspects = Counter("gridchain_suspects", "SUSPECT raised by this replica", ["node"],
                                registry=r).labels(**labels)
        # XFT §4.4: bookkeepers proven faulty (found here or forwarded and checked), by kind
        # (consensus.messages.FAULT_KINDS) and accused bookkeeper index.
        self.consensus_faults = Counter("gridchain_consensus_faults", "Bookkeepers proven faulty, by kind",
                                        ["kind", "accused"], registry=r)
        self.mempool_size = Gauge("gridchain_mempool_transactions", "Pending transactions", ["node"],
                                  registry=r).labels(**labels)
        self.peers = Gauge("gridchain_peers", "Connected peers", ["node"], registry=r).labels(**labels)
        self.committed_txs = Counter("gridchain_committed_transactions", "Transactions in final blocks",
                                     ["node"], registry=r).labels(**labels)
        self.commit_latency = Histogram("gridchain_commit_latency_seconds",
                                        "Admission at this node to finality", ["node"],
                                        buckets=LATENCY_BUCKETS_S, registry=r).labels(**labels)
        self.rejected_txs = Counter("gridchain_rejected_transactions", "Transactions refused, by reason",
                                    ["reason"], registry=r)
        self._rejected_messages = Counter("gridchain_rejected_messages", "Peer messages refused, by reason",
                                          ["reason"], registry=r)
        self.bad_blocks = Counter("gridchain_sync_bad_blocks",
                                  "Blocks refused from a block sync peer (not final, not linking, ...), by reason",
                                  ["reason"], registry=r)
        self.snapshot_parts_refused = Counter("gridchain_snapshot_parts_refused",
                                              "Snapshot parts refused from a peer while joining, by reason",
                                              ["reason"], registry=r)
        self.relay_duplicates = Counter("gridchain_relay_duplicates",
                                        "Relayed transactions recognised by hash and dropped undecoded",
                                        ["node"], registry=r).labels(**labels)
        self.relay_backlog = Gauge("gridchain_relay_backlog_transactions",
                                   "Relayed transactions waiting for admission", ["node"],
                                   registry=r).labels(**labels)
        self.relay_backlog_bytes = Gauge("gridchain_relay_backlog_bytes", "Bytes of relayed transactions "
                                         "waiting for admission", ["node"], registry=r).labels(**labels)
        self.mempool_bytes = Gauge("gridchain_mempool_bytes", "Bytes of pending transactions", ["node"],
                                   registry=r).labels(**labels)
        # A peer's message whose handling raised (a bug it found): by message type, from a fixed set.
        self.peer_message_errors = Counter("gridchain_peer_message_errors", "Peer messages whose handling raised",
                                           ["kind"], registry=r)
        self.rpc_requests = Counter("gridchain_rpc_requests", "JSON-RPC calls by method and outcome",
                                    ["method", "outcome"], registry=r)
        self.rpc_connections = Gauge("gridchain_rpc_connections", "Open RPC connections", registry=r)
        self.rpc_connections_closed = Counter("gridchain_rpc_connections_closed",
                                              "RPC connections refused or closed by the node, by reason",
                                              ["reason"], registry=r)
        self.loop_stall = Histogram("gridchain_loop_stall_seconds", "How late the event loop ran a timer",
                                    buckets=LATENCY_BUCKETS_S, registry=r)
        self.loop_stall_max = Gauge("gridchain_loop_stall_max_seconds", "Longest event loop stall seen",
                                    registry=r)
        r.register(SuppressedCollector(logfilter.REPEATS))
        self.storage_map_bytes = Gauge("gridchain_storage_map_bytes", "LMDB map size", registry=r)
        self.storage_used_bytes = Gauge("gridchain_storage_used_bytes", "LMDB map bytes in use", registry=r)
        self.storage_disk_free_bytes = Gauge("gridchain_storage_disk_free_bytes", "Free bytes on the data disk",
                                             registry=r)
        self.storage_full = Gauge("gridchain_storage_full", "1 while writes are paused for lack of space",
                                  registry=r)

    async def watch_loop_stalls(self) -> None:
        """Run forever: how late a short sleep wakes is how long something held the loop."""
        loop = asyncio.get_running_loop()
        longest = 0.0
        while True:
            started = loop.time()
            await asyncio.sleep(STALL_PROBE_S)
            stall = max(0.0, loop.time() - started - STALL_PROBE_S)
            self.loop_stall.observe(stall)
            if stall > longest:
                longest = stall
                self.loop_stall_max.set(stall)

    def message_rejected(self, reason: MessageRejection, count: int = 1) -> None:
        assert str(reason) in MESSAGE_REJECTIONS, reason
        self._rejected_messages.labels(reason=str(reason)).inc(count)

    def observe_storage(self, usage: StorageUsage) -> None:
        self.storage_map_bytes.set(usage.map_bytes)
        self.storage_used_bytes.set(usage.used_bytes)
        self.storage_disk_free_bytes.set(usage.disk_free_bytes)

    def observe_loop(self, node: Node) -> None:
        self.height.set(node.chain.height)
        self.mempool_size.set(len(node.mempool))
        self.mempool_bytes.set(node.mempool.size_bytes)
        self.relay_backlog.set(len(node.backlog))
        self.relay_backlog_bytes.set(node.backlog_bytes)
        self.peers.set(len(node.network.connected_peers()))
        if node.replica is not None:
            self.view.set(node.replica.view)

    def render(self) -> bytes:
        return generate_latest(self.registry)
