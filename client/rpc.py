"""JSON-RPC 2.0 over aiohttp: the one transport of the SDK, the CLI, the explorer, the
benchmarks and the fault harness.

A client holds a list of node URLs. A call goes to the node asked for (`node=`) or else to
the last one that answered; with `failover` a node that does not answer is asked last for
`NODE_RETRY_S` and the call moves on to the next. Every request is bounded: a timeout per
request and `reply_bytes_max` on what is read back. `batch` sends one JSON-RPC batch and
gives one `Reply` per call, in call order. The pause before sending again what a node
pushed back (`BACKPRESSURE` reasons) is `Backoff`'s.
"""

from __future__ import annotations

import itertools
import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from chain import TxReason
from client.errors import NodeUnavailable, ReplyTooLarge, RpcCallError

REQUEST_TIMEOUT_S = 40.0
# Above a node's largest reply (batch_response_bytes_max, 16 MiB by default): anything bigger
# is not a node's answer, and the client must not buffer it whole.
REPLY_BYTES_MAX = 32 << 20
READ_CHUNK_BYTES = 1 << 16
NODE_RETRY_S = 1.0  # with failover, a node that did not answer is asked last this long
# Pooled connections of a client's own session: the node's connections_per_client_max
# (64 by default) refuses more from one address.
CONNECTIONS_MAX = 64
INTERNAL_ERROR = -32603  # JSON-RPC's code, for a batch reply that lacks one of the calls

# The node is full, not the transaction wrong: send it again later, after a `Backoff` pause.
BACKPRESSURE = frozenset({TxReason.NODE_BUSY, TxReason.MEMPOOL_FULL})
BACKOFF_S = 0.05
BACKOFF_S_MAX = 1.0


class Backoff:
    """The pause before sending again: `BACKOFF_S` after a plain retry; doubling up to
    `BACKOFF_S_MAX` while the node keeps pushing back, so a backlog far beyond the mempool
    waits at the client instead of spinning refused requests."""

    def __init__(self, base_s: float = BACKOFF_S, max_s: float = BACKOFF_S_MAX) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.pause_s = base_s

    def next(self, pushed_back: bool) -> float:
        self.pause_s = min(self.pause_s * 2, self.max_s) if pushed_back else self.base_s
        return self.pause_s


@dataclass(frozen=True)
class Reply:
    """One call of a batch: its result, or the error the node answered."""

    result: Any = None
    error: RpcCallError | None = None

    @property
    def reason(self) -> str | None:
        return self.error.reason if self.error is not None else None

    def value(self) -> Any:
        """The result; the node's error raised."""
        if self.error is not None:
            raise self.error
        return self.result


class RpcClient:
    """Raw JSON-RPC to a list of node URLs. `token` is sent as `Authorization: Bearer` (the
    operator listener, or a public one under [rpc] public_auth; rpc/auth.py); `ca_file`
    verifies an https node's certificate. Without `failover` a call asks one node only (the
    fault harness addresses each node itself). `local_host` is the source address of its own
    session's connections: a node counts connections per client address, so parties sharing
    one machine each take their own (a loopback address per party, diagnosis/agentconfig.py)."""

    def __init__(self, urls: Sequence[str], session: aiohttp.ClientSession | None = None, token: str | None = None,
                 ca_file: Path | None = None, *, failover: bool = True, timeout_s: float = REQUEST_TIMEOUT_S,
                 reply_bytes_max: int = REPLY_BYTES_MAX, connections_max: int = CONNECTIONS_MAX,
                 local_host: str | None = None) -> None:
        assert urls, "at least one node URL"
        self.urls = list(urls)
        self.failover = failover
        self.timeout_s = timeout_s
        self.reply_bytes_max = reply_bytes_max
        self.connections_max = connections_max
        self.local_host = local_host
        self._current = 0
        self._down_until: dict[int, float] = {}  # url index -> monotonic time
        self._session = session
        self._own_session = session is None
        self._ids = itertools.count(1)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.ssl: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.connections_max,
                                             local_addr=(self.local_host, 0) if self.local_host else None)
            self._session = aiohttp.ClientSession(connector=connector,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def url(self) -> str:
        return self.urls[self._current]

    def answering(self) -> int:
        """How many of the URLs are not being skipped after a failure."""
        now = time.monotonic()
        return sum(1 for k in range(len(self.urls)) if self._down_until.get(k, 0.0) <= now)

    async def call(self, method: str, *params: Any, node: int | None = None, timeout_s: float | None = None) -> Any:
        """The result of one call; RpcCallError for the node's error, NodeUnavailable when
        no node answered."""
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}
        reply = await self._post(body, method, node, timeout_s)
        return _reply(reply).value()

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], node: int | None = None,
                    timeout_s: float | None = None) -> list[Reply]:
        """One JSON-RPC batch; one Reply per call, in call order. A batch the node refuses
        whole (a limit such as batch_max, or the caller's rate) fails every call alike."""
        assert calls, "a JSON-RPC batch is not empty"
        ids = [next(self._ids) for _ in calls]
        body = [{"jsonrpc": "2.0", "id": k, "method": method, "params": list(params)}
                for k, (method, params) in zip(ids, calls, strict=True)]
        replies = await self._post(body, f"a batch of {len(calls)} calls", node, timeout_s)
        if isinstance(replies, dict):
            return [_reply(replies)] * len(calls)
        by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
        missing = RpcCallError(INTERNAL_ERROR, "the batch reply has no reply to this call")
        return [_reply(by_id[k]) if k in by_id else Reply(error=missing) for k in ids]

    # transport ----------------------------------------------------------------------------
    def _order(self, node: int | None) -> list[int]:
        """URL indices to try: the one asked for (or the last that answered) first; with
        failover the others after it, those that just failed last."""
        first = self._current if node is None else node % len(self.urls)
        if not self.failover:
            return [first]
        now = time.monotonic()
        ordered = [(first + k) % len(self.urls) for k in range(len(self.urls))]
        return sorted(ordered, key=lambda k: self._down_until.get(k, 0.0) > now)

    async def _post(self, body: Any, what: str, node: int | None, timeout_s: float | None) -> Any:
        """POST `body` to the first node that answers with a JSON-RPC reply (an object, or a
        list for a batch); raise NodeUnavailable when none does."""
        data = json.dumps(body).encode()
        session = await self.session()
        seconds = timeout_s if timeout_s is not None else self.timeout_s
        timeout = aiohttp.ClientTimeout(total=seconds)
        headers = {"Content-Type": "application/json", **self.headers}
        last: Exception | None = None
        message = ""
        connect_failed = True
        for index in self._order(node):
            url = self.urls[index]
            try:
                async with session.post(url, data=data, headers=headers, ssl=self.ssl, timeout=timeout) as response:
                    raw = await _read(response, self.reply_bytes_max, url)
                    status = response.status
                reply = json.loads(raw)
            except aiohttp.ClientConnectorError as exc:
                # nothing reached this node: the call surely did not happen there
                refused = isinstance(exc.os_error, ConnectionRefusedError)
                last, message = exc, f"{url}: {'connection refused' if refused else exc.os_error}; is the node running?"
            except TimeoutError as exc:
                last, message, connect_failed = exc, f"{url}: no answer in {seconds:g} s", False
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                # an HTTP server that is not a node, not HTTP at all (a p2p port), or a dropped link
                last, connect_failed = exc, False
                message = f"{url}: not a gridchain JSON-RPC endpoint ({type(exc).__name__}); is it the RPC port?"
            else:
                if (isinstance(reply, list) and isinstance(body, list)) or _is_reply(reply):
                    self._current = index
                    self._down_until.pop(index, None)
                    return reply
                last, connect_failed = None, False
                message = f"{url}: answered HTTP {status} without a JSON-RPC reply; is it the RPC port?"
            self._down_until[index] = time.monotonic() + NODE_RETRY_S
        raise NodeUnavailable(f"no node answered {what}: {message}", connect_failed=connect_failed) from last


async def _read(response: aiohttp.ClientResponse, limit: int, url: str) -> bytes:
    """The reply body, refused beyond `limit` bytes before it is buffered whole."""
    if response.content_length is not None and response.content_length > limit:
        raise ReplyTooLarge(f"{url}: a reply of {response.content_length} bytes is over {limit}", limit)
    body = bytearray()
    async for chunk in response.content.iter_chunked(READ_CHUNK_BYTES):
        body += chunk
        if len(body) > limit:
            raise ReplyTooLarge(f"{url}: a reply over {limit} bytes", limit)
    return bytes(body)


def _is_reply(reply: Any) -> bool:
    return isinstance(reply, dict) and ("result" in reply or isinstance(reply.get("error"), dict))


def _reply(reply: Any) -> Reply:
    if not _is_reply(reply):
        return Reply(error=RpcCallError(INTERNAL_ERROR, f"not a JSON-RPC reply: {str(reply)[:80]}"))
    if "error" in reply:
        error = reply["error"]
        return Reply(error=RpcCallError(int(error.get("code", INTERNAL_ERROR)), str(error.get("message")),
                                        error.get("data")))
    return Reply(result=reply["result"])
