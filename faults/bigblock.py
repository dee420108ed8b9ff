"""insider-bigblock: a compromised bookkeeper that is not the primary floods every honest
node with frame-sized, properly signed consensus messages that each carry a new block of
24,000 small transactions, while the workload runs.

The insider is a bookkeeper outside the current view's group; its process is killed and the
flood completes the p2p handshake with its key (faults/insider.py `Link`), so every message
passes the transport and the signature checks. Each message carries a block never sent
before (its header's extra data is a counter), so no cache of decoded blocks helps: a node
that decodes a block before it knows the block is of use spends 1-3 s of CPU per message.
Four kinds take turns: a PREPARE of the current view (not from its primary), a PREPARE of
the next view the insider is primary of (a future view), a FINAL whose certificate is forged
around the insider's own vote, and a VIEW-CHANGE of the current view carrying the block as
its commit-log entry. Afterwards the insider restarts honestly.

Invariants of its own, besides the suite's: the chain advanced during the flood, no honest
node changed view, the honest transfers invoked during the flood were final with a bounded
p99, and the honest nodes spent at most BIGBLOCK_CPU_S_PER_MESSAGE_MAX of CPU per message
sent (the figures keep each node's CPU and the rejection counts by reason).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rlp

from chain import Block, BlockHeader, CommitCertificate, Transaction, Vote
from chain.certificate import synchronous_group
from chain.types import EMPTY_TRIE_ROOT
from consensus.messages import Final, Message, Prepare, ViewChange
from faults.craft import Insider
from faults.history import OK
from faults.insider import Link, scrape_metrics

if TYPE_CHECKING:
    from faults.scenarios import Ctx

# Under the 4 MiB p2p frame with its envelope: 24,000 transfers of 165 bytes (3.96 MB).
BIGBLOCK_TXS = 24_000
BIGBLOCK_HONEST_P99_S_MAX = 5.0  # honest transfers invoked during the flood: p99 to final receipt (7.0 s unfixed)
# CPU seconds the honest nodes spent per message of the flood (the workload's share included):
# decoding each block cost 0.57 s here (load 3); refused undecoded, a message costs its
# transport (decrypt, msgpack) only. The flood is self-clocked (a node busy decoding stops
# reading), so the node's CPU share says less than its cost per message.
BIGBLOCK_CPU_S_PER_MESSAGE_MAX = 0.15
CLOCK_TICKS_S = 100  # /proc/<pid>/stat counts CPU in USER_HZ ticks (100 on Linux)


async def insider_bigblock(ctx: Ctx) -> None:
    c = ctx.cluster
    view = await ctx.view()
    group = synchronous_group(view, c.nodes, c.t)
    insider_index = min(i for i in range(c.nodes) if i not in group)
    honest = [i for i in range(c.nodes) if i != insider_index]
    ctx.kill(insider_index)
    insider = Insider(insider_index, c.node_keys[insider_index], c.nodes, ctx.chain_id)
    statuses = await asyncio.gather(*(c.status(i) for i in honest))
    heights_before = [s["height"] for s in statuses if s is not None]
    views_before = {i: s["view"] for i, s in zip(honest, statuses, strict=True) if s is not None}
    cpu_before = {i: _cpu_s(c.pid(i)) for i in honest}
    flood_s = ctx.duration * 0.7
    ctx.history.fault("big-block flood", node=insider_index, view=view, txs_per_block=BIGBLOCK_TXS)
    flood_started, began = ctx.history.now(), time.monotonic()
    sent = await asyncio.to_thread(flood, c.layout.p2p_port, honest, insider, view,
                                   max(heights_before, default=0), flood_s)
    elapsed = time.monotonic() - began
    flood_ended = ctx.history.now()
    cpu_cores = {i: (_cpu_s(c.pid(i)) - cpu_before[i]) / elapsed for i in honest}
    statuses = await asyncio.gather(*(c.status(i) for i in honest))
    heights_after = [s["height"] for s in statuses if s is not None]
    views_after = {i: s["view"] for i, s in zip(honest, statuses, strict=True) if s is not None}
    metrics = {i: await asyncio.to_thread(scrape_metrics, c.layout.rpc_port(i)) for i in honest}
    await ctx.restart(insider_index)
    ctx.history.heal("insider restarted honest", node=insider_index)
    await ctx.sleep(ctx.duration * 0.3)

    rejected = Counter[str]()
    for m in metrics.values():
        for key, value in m.items():
            if key.startswith("gridchain_rejected_messages_total"):
                rejected[key.split('"')[1]] += int(value)
    latencies = sorted(latency for op in ctx.history.ops
                       if op.outcome == OK and flood_started <= op.invoke <= flood_ended
                       and (latency := op.latency()) is not None)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None
    ctx.figure("insider_bigblock", {
        "insider": insider_index, "flood_s": round(elapsed, 1), "sent": dict(sent),
        "bytes_sent_mib": round(sent["bytes"] / 2**20), "heights": [heights_before, heights_after],
        "views": [views_before, views_after], "cpu_cores": {f"node{i}": round(v, 2) for i, v in cpu_cores.items()},
        "cpu_s_per_message": round(sum(cpu_cores.values()) * elapsed / max(sent["messages"], 1), 3),
        "honest_final_during_flood": len(latencies), "honest_p99_s": p99,
        "rejected_by_reason": dict(rejected.most_common())})
    ctx.invariant("bigblock_chain_advanced", bool(heights_after) and min(heights_after) > max(heights_before),
                  f"heights {heights_before} before the flood, {heights_after} after")
    ctx.invariant("bigblock_no_view_change", views_before == views_after,
                  f"views {views_before} before the flood, {views_after} after")
    ctx.invariant("bigblock_honest_final_bounded", p99 is not None and p99 <= BIGBLOCK_HONEST_P99_S_MAX,
                  f"{len(latencies)} honest transfers invoked during the flood final, p99 "
                  f"{'-' if p99 is None else f'{p99:.2f}'} s (bound {BIGBLOCK_HONEST_P99_S_MAX} s)")
    per_message = sum(cpu_cores.values()) * elapsed / max(sent["messages"], 1)
    ctx.invariant("bigblock_cheap_per_message", per_message <= BIGBLOCK_CPU_S_PER_MESSAGE_MAX,
                  f"{per_message:.3f} CPU s per message on the honest nodes (bound {BIGBLOCK_CPU_S_PER_MESSAGE_MAX}): "
                  f"{sent['messages']} messages in {elapsed:.1f} s, mean CPU {cpu_cores} cores")


def flood(port_of: Any, targets: list[int], insider: Insider, view: int, height: int,
          seconds: float) -> Counter[str]:
    """Send big-block messages to every target, round robin, for `seconds`: one thread per
    target (a node that stops reading blocks only its own)."""
    bodies = BigBlocks(insider)
    sent: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run(target: int) -> None:
        try:
            link = Link(port_of(target), insider)
        except OSError:
            with lock:
                sent["connect_failed"] += 1
            return
        try:
            k = 0
            while time.monotonic() < deadline:
                kind = BigBlocks.KINDS[k % len(BigBlocks.KINDS)]
                link.take_updates()  # the final head the node announces: FINALs for the next height
                final = max(height, link.status[0] if link.status is not None else 0)
                with lock:
                    message = bodies.message(kind, view, final)
                wire = message.to_wire()
                if not link.send(wire):
                    with lock:
                        sent["closed_by_node"] += 1
                    return
                k += 1
                with lock:
                    sent[kind] += 1
                    sent["messages"] += 1
                    sent["bytes"] += message.payload_bytes()
        finally:
            link.close()

    threads = [threading.Thread(target=run, args=(target,), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    return sent


class BigBlocks:
    """Signed messages around a new big block each: the transactions are encoded once, the
    header changes (a counter in its extra data)."""

    KINDS = ("prepare", "future_prepare", "final", "view_change")

    def __init__(self, insider: Insider) -> None:
        self.insider = insider
        sender = Transaction.create(insider.key, chain_id=insider.chain_id, nonce=0, to=bytes(20),
                                    method="transfer", args=[bytes(20), 1], gas_limit=100_000)
        self.transactions = [sender.copy(nonce=k) for k in range(BIGBLOCK_TXS)]
        self.counter = 0

    def block(self, view: int, height: int) -> Block:
        self.counter += 1
        header = BlockHeader(bytes(32), height, int(time.time() * 1000), self.insider.index, view, bytes(32),
                             EMPTY_TRIE_ROOT, EMPTY_TRIE_ROOT, 0, self.counter.to_bytes(8, "big"))
        return Block(header, self.transactions, [])

    def message(self, kind: str, view: int, final_height: int) -> Message:
        i, height = self.insider, final_height + 1
        if kind == "future_prepare":
            view = next(v for v in range(view + 1, view + 1 + 2 * i.n)
                        if synchronous_group(v, i.n, i.t)[0] == i.index)
        block = self.block(view, height)
        raw = block.encoded()
        vote = i.vote(view, height, block.hash)
        forged = CommitCertificate(view, [Vote(member, vote if member == i.index else bytes(64))
                                          for member in synchronous_group(view, i.n, i.t)], [])
        message: Message
        if kind in ("prepare", "future_prepare"):
            message = Prepare(sender=i.index, view=view, height=height, block=raw, vote=vote)
        elif kind == "final":
            message = Final(sender=i.index, height=height, block_hash=block.hash, certificate=rlp.encode(forged),
                            block=raw)
        else:
            message = ViewChange(sender=i.index, view=view, final_height=0, final_hash=bytes(32),
                                 final_certificate=b"", entry_view=max(view - 1, 0), entry_block=raw,
                                 entry_certificate=rlp.encode(forged))
        return message.signed(i.key)


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_S
