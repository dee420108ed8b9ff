"""The RPC listener's connection guard: connection caps and the header and idle timeouts.

aiohttp closes nothing by itself that trickles bytes (slowloris) and keeps idle keep-alive
connections for a long time, so every accepted connection is wrapped:

- over `connections_max` open connections in total, or `connections_per_client_max` from
  one client address, a new one gets a canned HTTP 503 carrying JSON-RPC -32005 (data.limit
  names the cap) and is closed before aiohttp sees it: the descriptors left stay for peers.
  A connection counts from its accept, TLS handshake included: the guard runs the handshake
  itself (`loop.start_tls`) instead of the listener, which would hand it the connection only
  once the handshake is done, so slow handshakes could hold descriptors beyond the caps. On
  a TLS listener a refused connection is closed without a handshake (a canned reply would
  need one, which is the work and the time a flood wants to cost us);
- between requests a connection may stay silent for `idle_timeout_ms`; once the first byte
  of a request arrives, its headers must be complete (the handler started) within
  `header_timeout_ms`; the handler bounds the body read with the same timeout.

- a TLS handshake must finish within `header_timeout_ms` (asyncio's handshake timeout).

One sweep a second checks every connection, instead of a timer per connection.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rpc.errors import LIMIT_EXCEEDED

SWEEP_INTERVAL_S = 1.0
HEADER_TIMEOUT = "header-timeout"
IDLE = "idle"
TLS_HANDSHAKE = "tls-handshake"  # a handshake that failed or did not finish in time
# Application bytes that arrive with the end of a TLS handshake, before the guard has the
# TLS transport and aiohttp's protocol (one event loop turn): at most a few socket reads.
HANDSHAKE_EARLY_BYTES_MAX = 1 << 20

ClosedHook = Callable[[str], None]  # called with the reason a connection was closed


def refusal(limit: str, detail: str) -> bytes:
    """The whole HTTP response for a connection refused at accept time."""
    body = json.dumps({"jsonrpc": "2.0", "id": None,
                       "error": {"code": LIMIT_EXCEEDED, "message": detail, "data": {"limit": limit}}}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


@dataclass
class Tracked:
    host: str
    transport: asyncio.Transport
    quiet_since: float  # end of the last request (or the accept)
    request_started: float | None = None  # first byte of the next request, while not in a handler
    in_handler: bool = False


class ConnectionGuard:
    def __init__(self, connections_max: int, per_client_max: int, header_timeout_ms: int,
                 idle_timeout_ms: int, on_closed: ClosedHook) -> None:
        self.connections_max = connections_max
        self.per_client_max = per_client_max
        self.header_timeout_s = header_timeout_ms / 1000
        self.idle_timeout_s = idle_timeout_ms / 1000
        self.on_closed = on_closed
        self.connections: dict[asyncio.BaseTransport, Tracked] = {}
        self.per_client: Counter[str] = Counter()
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.ensure_future(self._sweep_loop())

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()

    def over_limit(self, host: str) -> str | None:
        """The cap a new connection from `host` would exceed, or None."""
        if len(self.connections) >= self.connections_max:
            return "connections_max"
        if self.per_client[host] >= self.per_client_max:
            return "connections_per_client_max"
        return None

    def opened(self, transport: asyncio.Transport, host: str) -> None:
        self.connections[transport] = Tracked(host, transport, asyncio.get_running_loop().time())
        self.per_client[host] += 1

    def replaced(self, old: asyncio.BaseTransport, new: asyncio.Transport) -> None:
        """The TLS transport `new` now carries the connection accepted as `old` (aiohttp
        sees only `new`)."""
        tracked = self.connections.pop(old, None)
        if tracked is not None:
            tracked.transport = new
            self.connections[new] = tracked

    def closed(self, transport: asyncio.BaseTransport) -> None:
        tracked = self.connections.pop(transport, None)
        if tracked is not None:
            self.per_client[tracked.host] -= 1
            if not self.per_client[tracked.host]:
                del self.per_client[tracked.host]

    def received(self, transport: asyncio.BaseTransport) -> None:
        tracked = self.connections.get(transport)
        if tracked is not None and not tracked.in_handler and tracked.request_started is None:
            tracked.request_started = asyncio.get_running_loop().time()

    def handler_started(self, transport: asyncio.BaseTransport | None) -> None:
        tracked = self.connections.get(transport) if transport is not None else None
        if tracked is not None:
            tracked.in_handler = True

    def handler_done(self, transport: asyncio.BaseTransport | None) -> None:
        tracked = self.connections.get(transport) if transport is not None else None
        if tracked is not None:
            tracked.in_handler = False
            tracked.request_started = None
            tracked.quiet_since = asyncio.get_running_loop().time()

    def sweep(self, now: float) -> None:
        for tracked in list(self.connections.values()):
            if tracked.in_handler:
                continue  # the handler bounds its own reads; WebSockets have a heartbeat
            if tracked.request_started is not None and now - tracked.request_started > self.header_timeout_s:
                self._close(tracked, HEADER_TIMEOUT)
            elif tracked.request_started is None and now - tracked.quiet_since > self.idle_timeout_s:
                self._close(tracked, IDLE)

    def _close(self, tracked: Tracked, reason: str) -> None:
        self.closed(tracked.transport)
        tracked.transport.abort()
        self.on_closed(reason)

    async def _sweep_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.sweep(loop.time())


class GuardedProtocol(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol: refuses over the caps, runs the TLS
    handshake when `tls` is given, reports bytes."""

    def __init__(self, guard: ConnectionGuard, make_inner: Callable[[], Any], tls: ssl.SSLContext | None = None,
                 handshake_timeout_s: float | None = None) -> None:
        self.guard = guard
        self.make_inner = make_inner
        self.tls = tls
        self.handshake_timeout_s = handshake_timeout_s
        self.inner: Any = None
        self.transport: asyncio.Transport | None = None
        self._early: list[bytes] = []  # TLS: decrypted bytes that came before the TLS transport
        self._early_bytes = 0
        self._handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else "?"
        limit = self.guard.over_limit(host)
        if limit is not None:
            if self.tls is None:
                transport.write(refusal(limit, f"too many RPC connections ({limit})"))
                transport.close()
            else:
                transport.abort()
            self.guard.on_closed(limit)
            return
        self.transport = transport
        self.guard.opened(transport, host)
        if self.tls is None:
            self._serve(transport)
        else:
            self._handshake = asyncio.ensure_future(self._start_tls(transport, self.tls))

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            secure = await loop.start_tls(raw, self, context, server_side=True,
                                          ssl_handshake_timeout=self.handshake_timeout_s)
        except (OSError, ssl.SSLError, TimeoutError, EOFError):  # start_tls closed the raw transport
            self.guard.closed(raw)
            self.transport = None
            self.guard.on_closed(TLS_HANDSHAKE)
            return
        if secure is None or secure.is_closing():  # lost just after the handshake
            self.guard.closed(raw)
            self.transport = None
            return
        assert isinstance(secure, asyncio.Transport)
        self.guard.replaced(raw, secure)
        self.transport = secure
        self._serve(secure)
        early, self._early = self._early, []
        for data in early:
            self.data_received(data)

    def _serve(self, transport: asyncio.Transport) -> None:
        self.inner = self.make_inner()
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.guard.closed(self.transport)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            if self._handshake is not None and self.transport is not None:
                # decrypted by the TLS layer before _start_tls resumed: keep it for aiohttp
                self._early_bytes += len(data)
                if self._early_bytes > HANDSHAKE_EARLY_BYTES_MAX:
                    self.transport.abort()
                else:
                    self._early.append(data)
            return
        assert self.transport is not None
        self.guard.received(self.transport)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()
