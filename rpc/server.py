"""aiohttp server: JSON-RPC 2.0 on POST / (batches up to batch_max), WebSocket /ws,
GET /health (200 in sync, 503 with the reason; open), GET /metrics (Prometheus text; under a
token permitting metrics:read where the listener wants tokens), on two listeners: the
public one (public methods only, rate-limited per client address, CORS as configured) and
the operator one (every method, each call under a bearer token permitting
it; rpc/auth.py). Both speak HTTPS when [rpc] names a certificate.

Malformed input gets its JSON-RPC error and never reaches the node's state. What an
outsider could exhaust is bounded: connections and their timing (rpc/guard.py, one guard
per listener, so public clients cannot lock operators out), calls per client address
(rpc/ratelimit.py), reply bytes (rpc/budget.py), and the time reads take on the consensus
loop (rpc/methods.py serves heavy reads on a worker thread).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from rpc import budget
from rpc.auth import AuthError, AuthFailure, Grant, SecretFileError, bearer, create_secret, load_secret, verify_token
from rpc.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UNAUTHORIZED,
    RpcConfigError,
    RpcError,
    invalid_params,
)
from rpc.guard import ConnectionGuard, GuardedProtocol
from rpc.methods import Handler, Methods, limit_error
from rpc.node import NodeView
from rpc.ratelimit import ClientRates
from rpc.subscriptions import ReceiptWaiters, Subscription, SubscriptionHub

log = logging.getLogger("gridchain.rpc")
JSON_DEPTH_MAX = 32
PUBLIC = "public"
OPERATOR = "operator"
ROLE = web.AppKey("role", str)
GUARD = web.AppKey("guard", ConnectionGuard)
CORS_MAX_AGE_S = 600  # browsers cache a preflight this long
# What a token must permit to read GET /metrics where the listener wants tokens: "metrics:read"
# (a Prometheus scraper's token: node.py rpc-token --permissions metrics:read).
METRICS_METHOD = "metrics_read"


@dataclass(frozen=True)
class Caller:
    """Who sent a call: the listener it came in on and the token's grant (None where the
    listener asks for no token)."""

    role: str
    grant: Grant | None
    host: str


# In-process calls (the explorer's pages): public methods only, as an anonymous client.
LOCAL_CALLER = Caller(PUBLIC, None, "local")


@dataclass
class Listener:
    role: str
    host: str
    port: int
    guard: ConnectionGuard
    app: web.Application
    runner: web.AppRunner | None = None
    server: asyncio.Server | None = None


class RpcServer:
    def __init__(self, node: NodeView, descriptors: int) -> None:
        """`descriptors`: the process's RLIMIT_NOFILE (runtime/descriptors.py raises it first)."""
        self.node = node
        self.config = node.config.rpc
        self.receipt_waiters = ReceiptWaiters(self.config.receipt_waiters_max)
        self.hub = SubscriptionHub(self.config.ws_send_queue_max)
        self.methods = Methods(self)
        node.final_listeners.append(self.receipt_waiters.block_final)
        node.final_listeners.append(self.hub.block_final)
        self.connections_max = max(1, min(self.config.connections_max,
                                          descriptors - self.config.descriptors_reserved))
        if self.connections_max < self.config.connections_max:
            log.warning("RPC connections capped at %d: RLIMIT_NOFILE %d minus descriptors_reserved %d",
                        self.connections_max, descriptors, self.config.descriptors_reserved)
        self.secret = _token_secret(self.config.jwt_secret_file)
        self.tls = _tls_context(self.config.tls_cert_file, self.config.tls_key_file)
        self.rates = ClientRates(self.config.client_calls_per_s_max, self.config.client_calls_burst_max,
                                 self.config.rate_exempt_hosts)
        self._replies = budget.ServerBudget(self.config.replies_bytes_max)
        operator_max = self.config.operator_connections_max
        self.listeners = {
            PUBLIC: self._listener(PUBLIC, self.config.host, self.config.port, ConnectionGuard(
                self.connections_max, self.config.connections_per_client_max, self.config.header_timeout_ms,
                self.config.idle_timeout_ms, self._closed_hook)),
            OPERATOR: self._listener(OPERATOR, self.config.operator_host, self.config.operator_port, ConnectionGuard(
                operator_max, operator_max, self.config.header_timeout_ms, self.config.idle_timeout_ms,
                self._closed_hook)),
        }
        self.guard = self.listeners[PUBLIC].guard
        self._stall_probe: asyncio.Future[None] | None = None

    def _closed_hook(self, reason: str) -> None:
        self.node.metrics.rpc_connections_closed.labels(reason=reason).inc()

    def _listener(self, role: str, host: str, port: int, guard: ConnectionGuard) -> Listener:
        middlewares = [self._track, self._cors] if role == PUBLIC else [self._track]
        app = web.Application(client_max_size=self.config.body_bytes_max, middlewares=middlewares)
        app[ROLE] = role
        app[GUARD] = guard
        app.router.add_post("/", self.handle_post)
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_get("/ws", self.handle_ws)
        return Listener(role, host, port, guard, app)

    @property
    def app(self) -> web.Application:
        """The public listener's application (the explorer mounts its pages on it)."""
        return self.listeners[PUBLIC].app

    @property
    def port(self) -> int:
        return self.listeners[PUBLIC].port

    @property
    def operator_port(self) -> int:
        return self.listeners[OPERATOR].port

    @property
    def listening(self) -> bool:
        return all(listener.server is not None for listener in self.listeners.values())

    def url(self, role: str) -> str:
        listener = self.listeners[role]
        host = f"[{listener.host}]" if ":" in listener.host else listener.host
        return f"{'https' if self.tls else 'http'}://{host}:{listener.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.listeners.values():
            listener.runner = web.AppRunner(listener.app, access_log=None, handle_signals=False)
            await listener.runner.setup()
            server = listener.runner.server
            assert server is not None
            # Our own listener instead of web.TCPSite: each connection passes the guard first,
            # and the guard runs the TLS handshake, so connections count from their accept.
            listener.server = await loop.create_server(
                functools.partial(GuardedProtocol, listener.guard, server, self.tls,
                                  self.config.header_timeout_ms / 1000 if self.tls else None),
                listener.host, listener.port, reuse_address=True)
            # port 0 asks the OS for a free port: read back the one it gave
            listener.port = listener.server.sockets[0].getsockname()[1]
            listener.guard.start()
        self._stall_probe = asyncio.ensure_future(self.node.metrics.watch_loop_stalls())
        log.info("RPC on %s (at most %d connections), operator RPC on %s", self.url(PUBLIC), self.connections_max,
                 self.url(OPERATOR))

    async def stop(self) -> None:
        for listener in self.listeners.values():
            listener.guard.stop()
            if listener.server is not None:
                listener.server.close()
        if self._stall_probe is not None:
            self._stall_probe.cancel()
        for socket in list(self.hub.sockets):
            await socket.ws.close()
        for listener in self.listeners.values():
            if listener.runner is not None:
                await listener.runner.cleanup()
        self.methods.close()

    @web.middleware
    async def _track(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Marks the connection as in a handler: the guard's header and idle timeouts
        apply only between requests."""
        guard = request.app[GUARD]
        guard.handler_started(request.transport)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            guard.handler_done(request.transport)

    @web.middleware
    async def _cors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Browser clients of the origins in [rpc] cors_origins; without a match no CORS
        header is sent and the browser keeps the page from reading the reply."""
        origin = request.headers.get("Origin")
        origins = self.config.cors_origins
        allowed = origin is not None and ("*" in origins or origin in origins)
        if request.method == "OPTIONS":
            if not allowed:
                return web.Response(status=403, text="origin not allowed")
            response: web.StreamResponse = web.Response(status=204, headers={
                "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type, Authorization",
                "Access-Control-Max-Age": str(CORS_MAX_AGE_S)})
        else:
            response = await handler(request)
        if allowed and not response.prepared:  # a WebSocket's headers are sent already
            assert origin is not None
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
            response.headers["Vary"] = "Origin"
        return response

    def _caller(self, request: web.Request) -> Caller:
        """The caller of this request; AuthError when its listener wants a token and the
        request has no valid one."""
        role = request.app[ROLE]
        host = request.remote or "?"
        if role == PUBLIC and not self.config.public_auth:
            return Caller(role, None, host)
        return Caller(role, verify_token(self.secret, bearer(request.headers.get("Authorization"))), host)

    def _refuse_unauthorized(self, exc: AuthError, status: int = 401) -> web.Response:
        self.node.metrics.rpc_requests.labels(method="unauthorized", outcome=str(UNAUTHORIZED)).inc()
        return _json(_error(None, auth_error(exc)), status=status)

    def _over_rate(self, caller: Caller, calls: int) -> web.Response | None:
        """HTTP 429 when `calls` more from this public caller exceed its rate."""
        if caller.role != PUBLIC:
            return None
        wait_s = self.rates.take(caller.host, calls, asyncio.get_running_loop().time())
        if not wait_s:
            return None
        self.node.metrics.rpc_requests.labels(method="rate-limited", outcome=str(LIMIT_EXCEEDED)).inc()
        error = limit_error("client_calls_per_s_max", f"more than {self.config.client_calls_per_s_max} calls/s "
                                                      f"from {caller.host}; retry in {wait_s:.1f} s")
        response = _json(_error(None, error), status=429)
        response.headers["Retry-After"] = str(math.ceil(wait_s))
        return response

    # HTTP ---------------------------------------------------------------------------------
    async def handle_post(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(self.config.header_timeout_ms / 1000):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json(_error(None, limit_error("body_bytes_max", "request body too large")), status=413)
        except TimeoutError:
            self.node.metrics.rpc_connections_closed.labels(reason="body-timeout").inc()
            return _json(_error(None, limit_error("header_timeout_ms", "request body too slow")), status=408)
        try:
            caller = self._caller(request)
        except AuthError as exc:
            return self._refuse_unauthorized(exc)
        try:
            payload = json.loads(body)
            _check_depth(payload)
        except (ValueError, RecursionError):
            return _json(_error(None, RpcError(PARSE_ERROR, "parse error")))
        if isinstance(payload, list):
            if not payload:
                return _json(_error(None, RpcError(INVALID_REQUEST, "empty batch")))
            if len(payload) > self.config.batch_max:
                too_long = f"batch of {len(payload)} > {self.config.batch_max}"
                return _json(_error(None, limit_error("batch_max", too_long)))
            if (refused := self._over_rate(caller, len(payload))) is not None:
                return refused
            with self._budget() as shared:
                replies = [r for r in await asyncio.gather(*(self.call(item, shared, caller) for item in payload))
                           if r]
                return _raw_json("[" + ",".join(replies) + "]") if replies else web.Response(status=204)
        if (refused := self._over_rate(caller, 1)) is not None:
            return refused
        with self._budget() as shared:
            reply = await self.call(payload, shared, caller)
            return _raw_json(reply) if reply is not None else web.Response(status=204)

    @contextmanager
    def _budget(self) -> Iterator[budget.BatchBudget]:
        """A request's reply budget; its bytes count against replies_bytes_max until the
        reply is built."""
        batch = budget.BatchBudget(self.config.response_bytes_max, self.config.batch_response_bytes_max,
                                   self._replies)
        try:
            yield batch
        finally:
            batch.close()

    async def local_call(self, method: str, *params: Any) -> Any:
        """One method called from inside this process (the explorer), with the same checks,
        budgets and metrics as over HTTP; an error reply raises its RpcError."""
        with self._budget() as shared:
            text = await self.call({"jsonrpc": "2.0", "id": 0, "method": method, "params": list(params)}, shared,
                                   LOCAL_CALLER)
        assert text is not None, "a request with an id gets a reply"
        reply = json.loads(text)
        if "error" in reply:
            error = reply["error"]
            raise RpcError(error["code"], error["message"], error.get("data"))
        return reply["result"]

    async def call(self, request: Any, shared: budget.BatchBudget, caller: Caller) -> str | None:
        """One JSON-RPC request object -> its encoded response (None for a notification),
        within the byte budget `shared` (its batch's)."""
        own = budget.CallBudget(shared)
        budget.current.set(own)
        reply = await self._reply(request, caller)
        if reply is None:
            return None
        text = json.dumps(reply)
        try:
            own.charge(len(text))
        except RpcError as exc:
            self.node.metrics.rpc_requests.labels(method="over-budget", outcome=str(exc.code)).inc()
            text = json.dumps(_error(reply.get("id"), exc))
        return text

    async def _reply(self, request: Any, caller: Caller) -> dict[str, Any] | None:
        well_formed = isinstance(request, dict) and request.get("jsonrpc") == "2.0"
        if not well_formed or not isinstance(request.get("method"), str):
            return _error(request.get("id") if isinstance(request, dict) else None,
                          RpcError(INVALID_REQUEST, "invalid request"))
        request_id = request.get("id")
        method = request["method"]
        handler = None
        try:
            handler = self._handler(method, caller)
            result = await self.methods.dispatch(handler, request.get("params", []))
        except RpcError as exc:
            self.node.metrics.rpc_requests.labels(method=method if handler else "unknown", outcome=str(exc.code)).inc()
            return None if "id" not in request else _error(request_id, exc)
        except Exception as exc:  # noqa: BLE001 - the node stays up; the bug is logged loudly
            log.exception("RPC %s failed", method)
            self.node.metrics.rpc_requests.labels(method=method, outcome="internal").inc()
            return _error(request_id, RpcError(INTERNAL_ERROR, f"internal error: {type(exc).__name__}"))
        self.node.metrics.rpc_requests.labels(method=method, outcome="ok").inc()
        return None if "id" not in request else {"jsonrpc": "2.0", "id": request_id, "result": result}

    def _handler(self, method: str, caller: Caller) -> Handler:
        """The handler of `method` for this caller, or the RpcError saying why not."""
        handler = self.methods.table.get(method)
        if handler is None and caller.role == OPERATOR:
            handler = self.methods.operator_table.get(method)
        if handler is None:
            if method in self.methods.operator_table:
                raise auth_error(AuthError(AuthFailure.OPERATOR_ONLY, f"{method} is served on the operator listener "
                                                                      "([rpc] operator_host, operator_port) only"))
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {method[:64]}")
        if caller.grant is not None:
            try:
                caller.grant.check(method)
            except AuthError as exc:
                raise auth_error(exc) from exc
        return handler

    def _wants_token(self, request: web.Request) -> bool:
        return request.app[ROLE] == OPERATOR or self.config.public_auth

    async def handle_health(self, request: web.Request) -> web.Response:
        """Open on both listeners, token or not: load balancers and service managers probe
        it (as Besu's /liveness and /readiness). Where the listener wants tokens, the
        public answer is only whether the node serves; the storage and connection counts
        (what an attacker would watch to time an exhaustion) need the operator listener."""
        synced, reason = self.node.is_synced()
        body: dict[str, Any] = {"status": "ok" if synced else "unavailable", "reason": reason,
                                "height": self.node.chain.height}
        if request.app[ROLE] == OPERATOR or not self.config.public_auth:
            usage, full = self.node.store.usage(), self.node.storage_full
            body |= {"rpcConnections": len(self.guard.connections),
                     "storage": {"mapBytes": usage.map_bytes, "usedBytes": usage.used_bytes,
                                 "diskFreeBytes": usage.disk_free_bytes, "full": full.reason if full else None}}
        return _json(body, status=200 if synced else 503)

    def metrics_text(self) -> bytes:
        """The node's metrics in Prometheus text, fresh (/metrics, the in-process explorer)."""
        self.node.metrics.observe_loop(self.node)
        self.node.metrics.rpc_connections.set(len(self.guard.connections))
        self.node.metrics.observe_storage(self.node.store.usage())
        return self.node.metrics.render()

    async def handle_metrics(self, request: web.Request) -> web.Response:
        """Where the listener wants tokens (the operator one, the public one under
        public_auth), only with a token permitting `metrics:read`: the counters show peers,
        load, rejections and timing an outsider should not watch (Besu and CometBFT serve
        them on an operator-only port)."""
        if self._wants_token(request):
            try:
                grant = self._caller(request).grant
                assert grant is not None, "a listener that wants tokens always has a grant"
                grant.check(METRICS_METHOD)
            except AuthError as exc:
                return self._refuse_unauthorized(exc, status=403 if exc.reason == AuthFailure.NOT_PERMITTED else 401)
        return web.Response(body=self.metrics_text(), content_type="text/plain", charset="utf-8")

    # WebSocket ----------------------------------------------------------------------------
    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        try:
            caller = self._caller(request)
        except AuthError as exc:
            return self._refuse_unauthorized(exc)
        if len(self.hub.sockets) >= self.config.websockets_max:
            return _json(_error(None, limit_error("websockets_max", "too many open WebSockets")), status=503)
        ws = web.WebSocketResponse(max_msg_size=64 * 1024, heartbeat=30)
        await ws.prepare(request)
        socket = self.hub.open(ws)
        sender = asyncio.ensure_future(self._ws_sender(socket))
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    break
                await socket.queue.put(await self._ws_request(socket, message.data, caller))
        finally:
            sender.cancel()
            self.hub.close(socket)
        return ws

    async def _ws_sender(self, socket: Any) -> None:
        while True:
            message = await socket.queue.get()
            await socket.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def _ws_request(self, socket: Any, text: str, caller: Caller) -> dict[str, Any] | str:
        try:
            request = json.loads(text)
        except ValueError:
            return _error(None, RpcError(PARSE_ERROR, "parse error"))
        if not isinstance(request, dict):
            return _error(None, RpcError(INVALID_REQUEST, "invalid request"))
        method, params, request_id = request.get("method"), request.get("params", []), request.get("id")
        if self._over_rate(caller, 1) is not None:
            return _error(request_id, limit_error("client_calls_per_s_max",
                                                  f"more than {self.config.client_calls_per_s_max} calls/s"))
        try:
            if method in ("subscribe", "unsubscribe") and caller.grant is not None:
                try:
                    caller.grant.check(method)
                except AuthError as exc:
                    raise auth_error(exc) from exc
            if method == "subscribe":
                return {"jsonrpc": "2.0", "id": request_id, "result": self._subscribe(socket, params)}
            if method == "unsubscribe":
                if not isinstance(params, list) or len(params) != 1:
                    raise invalid_params("unsubscribe takes [subscriptionId]")
                return {"jsonrpc": "2.0", "id": request_id,
                        "result": socket.subscriptions.pop(params[0], None) is not None}
        except RpcError as exc:
            return _error(request_id, exc)
        with self._budget() as shared:
            reply = await self.call(request, shared, caller)
        return reply or {"jsonrpc": "2.0", "id": request_id, "result": None}

    def _subscribe(self, socket: Any, params: Any) -> str:
        if not isinstance(params, list) or not params or params[0] not in ("newHeads", "events"):
            raise invalid_params('subscribe takes ["newHeads"] or ["events", {filter}]')
        if len(socket.subscriptions) >= self.config.subscriptions_per_socket_max:
            raise limit_error("subscriptions_per_socket_max", "too many subscriptions on this socket")
        flt = params[1] if len(params) > 1 else {}
        if not isinstance(flt, dict) or not set(flt) <= {"contract", "name", "fields"}:
            raise invalid_params("event filter keys: contract, name, fields")
        contract = flt.get("contract")
        if isinstance(contract, str) and not contract.startswith("0x"):
            found = self.node.chain.engine.by_name.get(contract)
            contract = "0x" + found.address.hex() if found else contract
        fields = flt.get("fields", {})
        if not isinstance(fields, dict):
            raise invalid_params("fields must be an object")
        sub = Subscription(self.hub.new_id(), params[0], contract, flt.get("name"), fields)
        socket.subscriptions[sub.id] = sub
        return sub.id


def auth_error(exc: AuthError) -> RpcError:
    return RpcError(UNAUTHORIZED, exc.detail, {"reason": str(exc.reason)})


def _token_secret(path: Any) -> bytes:
    """The node's token secret, created at the first start."""
    try:
        if create_secret(path):
            log.info("wrote a new RPC token secret to %s (mode 0600)", path)
        return load_secret(path)
    except (SecretFileError, OSError) as exc:
        raise RpcConfigError(f"[rpc] jwt_secret_file: {exc}") from exc


def _tls_context(cert: Any, key: Any) -> ssl.SSLContext | None:
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise RpcConfigError(f"[rpc] tls_cert_file {cert} / tls_key_file {key}: {exc}") from exc
    return context


def _error(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


def _json(body: Any, status: int = 200) -> web.Response:
    return _raw_json(json.dumps(body), status)


def _raw_json(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="application/json")


def _check_depth(value: Any, depth: int = 0) -> None:
    if depth > JSON_DEPTH_MAX:
        raise ValueError("JSON nested too deep")
    if isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _check_depth(item, depth + 1)
