"""TxRelay: how pending transactions travel between nodes, in work proportional to what is new.

The node pushes a transaction it has just admitted, whole, to every peer not known to have
it (one `txs` batch per peer per loop turn, not one frame per transaction). After that it
only ever *announces* it by hash (`tx_inv`): a transaction still pending here after
`rebroadcast_after_ms` is announced again to the peers that have not shown they hold it,
with the interval doubling each time, and a peer that lacks it asks for it (`tx_get`). So
a backlog costs 32 bytes per transaction and announcement, never a decode: the re-sent
whole transactions that made a backlog collapse the chain (issue 10) are gone.

Each frame is bounded in count and bytes, and so is each peer's *rate*: the hashes it may
announce or ask for and the bytes of answers it may draw per second (token buckets). Past
them its requests are dropped (counted), so a peer repeating `tx_get` as fast as it can
write costs this node no more than its budget; an honest peer never comes near it.

What a peer holds is learnt from what it sent us (a transaction, or a hash in its
inventory). What we pushed to it is not proof: a link may lose frames and keep the TCP
connection (a partition), which is why announcements go on until the peer shows it.

This module is pure bookkeeping: it decides what to send to whom and returns it; the node
owns the sockets, the mempool and the clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runtime.ratelimit import TokenBucket

TXS = "txs"  # {"raw": [rlp bytes]}: whole transactions
TX_INV = "tx_inv"  # {"hashes": [32 bytes]}: transactions the sender holds
TX_GET = "tx_get"  # {"hashes": [32 bytes]}: transactions the sender asks for
RELAY_TYPES = (TXS, TX_INV, TX_GET)

TX_BATCH_MAX = 128  # transactions per `txs` frame (x tx_bytes_max stays under frame_bytes_max)
TX_BATCH_BYTES_MAX = 1 << 20  # bytes of transactions per `txs` frame
INV_HASHES_MAX = 4096  # hashes per `tx_inv` / `tx_get` frame (128 KiB)

PeerId = bytes
Outgoing = list[tuple[PeerId, dict[str, Any]]]


POSITIVE = {"min": 1}


@dataclass(frozen=True)
class RelayLimits:
    # hashes remembered per peer as held by it (LRU); past it the oldest may be announced again
    known_per_peer_max: int = field(default=65_536, metadata=POSITIVE)
    # relayed transactions waiting for admission (decode, signature, mempool checks); past it the oldest go
    backlog_txs_max: int = field(default=20_000, metadata=POSITIVE)
    backlog_bytes_max: int = field(default=64 << 20, metadata=POSITIVE)  # their bytes
    # a transaction pending here this long is announced (by hash) to the peers not known to hold it
    reannounce_first_ms: int = field(default=3_000, metadata=POSITIVE)
    reannounce_max_ms: int = field(default=60_000, metadata=POSITIVE)  # the interval doubles up to this
    reannounce_per_tick_max: int = field(default=4_096, metadata=POSITIVE)  # hashes announced per status tick
    # hashes asked of peers and not yet received; past it nothing more is asked until some expire
    requests_max: int = field(default=16_384, metadata=POSITIVE)
    request_timeout_ms: int = field(default=5_000, metadata=POSITIVE)  # then another peer may be asked
    # refused transactions remembered by hash, so a copy from another peer is not checked again
    rejected_recent_max: int = field(default=16_384, metadata=POSITIVE)
    # hashes one peer may announce (tx_inv) or ask for (tx_get) per second, and at once (its
    # first inventory after connecting lists everything pending there: up to the mempool's size)
    peer_hashes_per_s_max: int = field(default=16_384, metadata=POSITIVE)
    peer_hashes_burst_max: int = field(default=65_536, metadata=POSITIVE)
    # bytes of transactions sent per second in answer to one peer's tx_get, and at once
    peer_answer_bytes_per_s_max: int = field(default=8 << 20, metadata=POSITIVE)
    peer_answer_bytes_burst_max: int = field(default=32 << 20, metadata=POSITIVE)

    def __post_init__(self) -> None:
        if self.reannounce_first_ms > self.reannounce_max_ms:
            raise ValueError("reannounce_first_ms must not exceed reannounce_max_ms")


class HashLru:
    """A bounded set of hashes; the oldest leave first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def add(self, item: bytes) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __contains__(self, item: bytes) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _Pending:
    next_announce_ms: int
    interval_ms: int


class TxRelay:
    def __init__(self, limits: RelayLimits, pending_max: int) -> None:
        self.limits = limits
        self.pending_max = pending_max  # the mempool's txs_max: entries beyond are stale
        self._known: dict[PeerId, HashLru] = {}
        # Pending here, oldest announcement first (insertion order = next announcement order
        # is kept by moving an entry to the end whenever it is announced).
        self._pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self._push: list[tuple[bytes, bytes, PeerId | None]] = []  # (hash, raw, origin) admitted this turn
        self._requested: OrderedDict[bytes, int] = OrderedDict()  # hash -> when asked, ms
        self._handed: set[bytes] = set()  # pending transactions handed over (hand_over)
        self._hash_budget: dict[PeerId, TokenBucket] = {}
        self._answer_budget: dict[PeerId, TokenBucket] = {}
        self.over_rate = 0  # requests dropped because their peer was over its budget (metrics)

    # --- peers -----------------------------------------------------------------------------
    def peer_up(self, peer: PeerId) -> Outgoing:
        """A peer connected: announce everything pending here (it fetches what it lacks)."""
        self._known[peer] = HashLru(self.limits.known_per_peer_max)
        return [(peer, message) for message in _inv_messages(list(self._pending))]

    def peer_down(self, peer: PeerId) -> None:
        self._known.pop(peer, None)
        self._hash_budget.pop(peer, None)
        self._answer_budget.pop(peer, None)

    def peers(self) -> int:
        return len(self._known)

    def mark_held(self, peer: PeerId, tx_hash: bytes) -> None:
        known = self._known.get(peer)
        if known is not None:
            known.add(tx_hash)

    # --- our transactions ------------------------------------------------------------------
    def admitted(self, tx_hash: bytes, raw: bytes, now_ms: int, origin: PeerId | None = None) -> None:
        """A transaction entered the mempool here: push it this turn, announce it later."""
        self._pending[tx_hash] = _Pending(now_ms + self.limits.reannounce_first_ms,
                                          self.limits.reannounce_first_ms)
        if len(self._pending) > self.pending_max:
            self._pending.popitem(last=False)
        self._push.append((tx_hash, raw, origin))
        self._requested.pop(tx_hash, None)
        if origin is not None:
            self.mark_held(origin, tx_hash)

    def left(self, tx_hashes: Iterable[bytes]) -> None:
        """Transactions no longer pending here (final, or dropped)."""
        for tx_hash in tx_hashes:
            self._pending.pop(tx_hash, None)

    def pending_count(self) -> int:
        return len(self._pending)

    def flush(self) -> Outgoing:
        """The pushes of this turn: per peer, the admitted transactions it does not hold."""
        out: Outgoing = []
        if self._push:
            for peer, known in self._known.items():
                raws = [raw for h, raw, origin in self._push if origin != peer and h not in known]
                out.extend((peer, message) for message in _txs_messages(raws))
            self._push.clear()
        return out

    def hand_over(self, peers: list[PeerId], pending: list[tuple[bytes, bytes]]) -> Outgoing:
        """This node leaves the bookkeeper set at the next epoch, and its links with the set
        end there: push each pending transaction (hash, raw) whole, once, to every one of
        `peers` (the set that stays), whatever they were seen to hold. A transaction only
        announced, or pushed while a link was going down, would otherwise die with the
        links. The transactions handed over are remembered while they are pending."""
        fresh = [(tx_hash, raw) for tx_hash, raw in pending if tx_hash not in self._handed]
        if not peers or not fresh:
            return []
        self._handed = (self._handed | {tx_hash for tx_hash, _ in fresh}) & {tx_hash for tx_hash, _ in pending}
        messages = _txs_messages([raw for _, raw in fresh])
        return [(peer, message) for peer in peers for message in messages]

    def due_announcements(self, now_ms: int, count_max: int, is_pending: Callable[[bytes], bool]) -> Outgoing:
        """Announce again, by hash, transactions pending longer than their interval, to the
        peers that have not shown they hold them; each interval doubles."""
        due: list[bytes] = []
        while self._pending and len(due) < count_max:
            tx_hash, entry = next(iter(self._pending.items()))
            if entry.next_announce_ms > now_ms:
                break
            if not is_pending(tx_hash):  # dropped from the mempool without our notice
                del self._pending[tx_hash]
                continue
            due.append(tx_hash)
            entry.interval_ms = min(entry.interval_ms * 2, self.limits.reannounce_max_ms)
            entry.next_announce_ms = now_ms + entry.interval_ms
            self._pending.move_to_end(tx_hash)
        out: Outgoing = []
        for peer, known in self._known.items():
            hashes = [h for h in due if h not in known]
            out.extend((peer, message) for message in _inv_messages(hashes))
        return out

    # --- their transactions ----------------------------------------------------------------
    def wanted(self, peer: PeerId, hashes: Iterable[bytes], have: Callable[[bytes], bool],
               now_ms: int) -> Outgoing:
        """A peer announced `hashes`: ask it for those this node lacks (`have(h)` false) and
        has not asked of anyone in the last request_timeout_ms."""
        hashes = list(hashes)
        if not self._within_hash_budget(peer, len(hashes), now_ms):
            return []
        self._expire_requests(now_ms)
        ask: list[bytes] = []
        for tx_hash in hashes:
            self.mark_held(peer, tx_hash)
            if tx_hash in self._requested or tx_hash in self._pending or have(tx_hash):
                continue
            if len(self._requested) >= self.limits.requests_max:
                break
            self._requested[tx_hash] = now_ms
            ask.append(tx_hash)
        return [(peer, {"type": TX_GET, "hashes": ask[i:i + INV_HASHES_MAX]})
                for i in range(0, len(ask), INV_HASHES_MAX)]

    def answer(self, peer: PeerId, hashes: Iterable[bytes], raw_of: Callable[[bytes], bytes | None],
               now_ms: int) -> Outgoing:
        """A peer asked for `hashes`: send those still pending here (`raw_of` gives them),
        as far as the peer's answer budget goes. Sending is no proof the peer holds them (a
        lossy link), so they stay unmarked."""
        hashes = list(hashes)
        if not self._within_hash_budget(peer, len(hashes), now_ms):
            return []
        budget = self._answer_budget.get(peer)
        if budget is None:
            budget = self._answer_budget[peer] = TokenBucket(
                self.limits.peer_answer_bytes_per_s_max, self.limits.peer_answer_bytes_burst_max, now_ms)
        raws: list[bytes] = []
        for tx_hash in hashes:
            raw = raw_of(tx_hash)
            if raw is None:
                continue
            if not budget.take(len(raw), now_ms):
                self.over_rate += 1
                break  # the rest waits for the peer's next request (it asks again after a timeout)
            raws.append(raw)
        return [(peer, message) for message in _txs_messages(raws)]

    def _within_hash_budget(self, peer: PeerId, count: int, now_ms: int) -> bool:
        budget = self._hash_budget.get(peer)
        if budget is None:
            budget = self._hash_budget[peer] = TokenBucket(
                self.limits.peer_hashes_per_s_max, self.limits.peer_hashes_burst_max, now_ms)
        if budget.take(count, now_ms):
            return True
        self.over_rate += 1
        return False

    def _expire_requests(self, now_ms: int) -> None:
        cutoff = now_ms - self.limits.request_timeout_ms
        while self._requested and next(iter(self._requested.values())) < cutoff:
            self._requested.popitem(last=False)


def _inv_messages(hashes: list[bytes]) -> list[dict[str, Any]]:
    return [{"type": TX_INV, "hashes": hashes[i:i + INV_HASHES_MAX]}
            for i in range(0, len(hashes), INV_HASHES_MAX)]


def _txs_messages(raws: list[bytes]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    batch: list[bytes] = []
    size = 0
    for raw in raws:
        if batch and (len(batch) == TX_BATCH_MAX or size + len(raw) > TX_BATCH_BYTES_MAX):
            messages.append({"type": TXS, "raw": batch})
            batch, size = [], 0
        batch.append(raw)
        size += len(raw)
    if batch:
        messages.append({"type": TXS, "raw": batch})
    return messages
