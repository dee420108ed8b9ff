"""HandshakeSlots: which inbound connections may be in their handshake at once.

Strangers must not be able to keep a configured peer out (70 idle connections once filled
the 64 slots and kept a restarted bookkeeper at 0 peers for 30 s), so a slot is not first
come, first served:

- a connection that has not sent a byte yet is *silent*; when the slots are full
  (`pending_handshakes_max` in all, `pending_handshakes_per_host_max` from its host), a
  new connection evicts the oldest silent one (from that host when the host is full)
  instead of being refused. A real peer sends its first handshake frame (its KEY, or its
  HELLO on a plain link) as soon as it connects, so it is
  silent for a round trip at most, while a squatter holds a slot only until a newer
  connection needs it; every connection must deliver its HELLO within `hello_timeout_ms`;
- a connection that named an allowed key is *claimed* and is never evicted for an
  anonymous one; a second claim of the same key evicts the older one (the key's owner
  reconnecting), so at most one slot per allowed key is claimed.

A new connection is refused only when no slot it could take is silent. (A stranger that
trickles bytes is not silent: it holds its slot for `hello_timeout_ms`, and only the
per-host cap keeps it from holding them all; on loopback, where every peer shares one
address, such a stranger can still delay peers by that long.)
Pure bookkeeping: the caller aborts the evicted connections' transports.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(eq=False)
class Pending:
    host: str
    transport: asyncio.WriteTransport
    heard: Callable[[], bool]  # whether any byte arrived from it yet
    claimed: bytes | None = None  # the allowed key its HELLO named, not proven yet
    evicted: bool = False
    order: int = field(default=0)


class HandshakeSlots:
    def __init__(self, total_max: int, per_host_max: int) -> None:
        self.total_max = total_max
        self.per_host_max = per_host_max
        self._pending: dict[int, Pending] = {}  # by arrival order, oldest first
        self._per_host: Counter[str] = Counter()
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, host: str, transport: asyncio.WriteTransport,
              heard: Callable[[], bool]) -> tuple[Pending | None, list[Pending]]:
        """A slot for a new connection from `host` (None: refused) and the connections
        evicted to make room for it."""
        evicted: list[Pending] = []
        if self._per_host[host] >= self.per_host_max:
            victim = self._oldest_silent(host)
            if victim is None:
                return None, evicted
            evicted.append(self._evict(victim))
        if len(self._pending) >= self.total_max:
            victim = self._oldest_silent(None)
            if victim is None:
                return None, evicted
            evicted.append(self._evict(victim))
        pending = Pending(host, transport, heard, order=next(self._order))
        self._pending[pending.order] = pending
        self._per_host[host] += 1
        return pending, evicted

    def claim(self, pending: Pending, key: bytes) -> list[Pending]:
        """`pending` named the allowed `key`: it is claimed; an older claim of the key goes."""
        evicted = [self._evict(other) for other in list(self._pending.values())
                   if other is not pending and other.claimed == key]
        pending.claimed = key
        return evicted

    def release(self, pending: Pending) -> None:
        if self._pending.pop(pending.order, None) is not None:
            self._per_host[pending.host] -= 1
            if not self._per_host[pending.host]:
                del self._per_host[pending.host]

    def _oldest_silent(self, host: str | None) -> Pending | None:
        return next((p for p in self._pending.values()
                     if p.claimed is None and not p.heard() and (host is None or p.host == host)), None)

    def _evict(self, pending: Pending) -> Pending:
        pending.evicted = True
        self.release(pending)
        return pending
