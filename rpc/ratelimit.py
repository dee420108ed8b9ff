"""Calls per client address on the public listener: a token bucket per address, refilled at
`client_calls_per_s_max` up to `client_calls_burst_max`. Every JSON-RPC call counts (each
entry of a batch, each WebSocket request), since calls, not HTTP requests, are the work.

The connection caps (rpc/guard.py) bound how many sockets one address holds; this bounds
what it asks through them, so one client cannot take the node's RPC time from the others.
Addresses in `exempt` (the node host's own tools by default) are never limited.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Buckets that refilled completely hold no information: dropped at most this often, so the
# table holds only addresses active in the last interval.
PRUNE_INTERVAL_S = 10.0


@dataclass
class Bucket:
    tokens: float
    updated: float


class ClientRates:
    def __init__(self, per_s_max: int, burst_max: int, exempt: Iterable[str]) -> None:
        self.per_s = per_s_max
        self.burst = burst_max
        self.exempt = frozenset(exempt)
        self.buckets: dict[str, Bucket] = {}
        self._pruned = 0.0

    def take(self, host: str, calls: int, now: float) -> float:
        """Takes `calls` from `host`'s bucket: 0.0 when allowed, else the seconds after
        which they would be (nothing is taken then)."""
        if host in self.exempt:
            return 0.0
        if now - self._pruned > PRUNE_INTERVAL_S:
            self._prune(now)
        bucket = self.buckets.get(host)
        if bucket is None:
            bucket = self.buckets[host] = Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.per_s)
        bucket.updated = now
        if calls > bucket.tokens:
            return (calls - bucket.tokens) / self.per_s
        bucket.tokens -= calls
        return 0.0

    def _prune(self, now: float) -> None:
        self._pruned = now
        full = [host for host, b in self.buckets.items() if b.tokens + (now - b.updated) * self.per_s >= self.burst]
        for host in full:
            del self.buckets[host]
