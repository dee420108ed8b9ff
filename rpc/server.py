"""aiohttp server: JSON-RPC 2.0 on POST / (batches up to batch_max), WebSocket /ws,
GET /health (200 in sync, 503 with the reason), GET /metrics (Prometheus text).

Malformed input gets its JSON-RPC error and never reaches the node's state. What an
outsider could exhaust is bounded: connections and their timing (rpc/guard.py), reply
bytes (rpc/budget.py), and the time reads take on the consensus loop (rpc/methods.py
serves heavy reads on a worker thread).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from rpc import budget
from rpc.errors import INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, RpcError, invalid_params
from rpc.guard import ConnectionGuard, GuardedProtocol
from rpc.methods import Methods, limit_error
from rpc.subscriptions import ReceiptWaiters, Subscription, SubscriptionHub
from runtime.descriptors import raise_descriptor_limit

if TYPE_CHECKING:
    from runtime.node import Node

log = logging.getLogger("gridchain.rpc")
JSON_DEPTH_MAX = 32


class RpcServer:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.config = node.config.rpc
        self.receipt_waiters = ReceiptWaiters(self.config.receipt_waiters_max)
        self.hub = SubscriptionHub(self.config.ws_send_queue_max)
        self.methods = Methods(self)
        node.final_listeners.append(self.receipt_waiters.block_final)
        node.final_listeners.append(self.hub.block_final)
        descriptors = raise_descriptor_limit()
        self.connections_max = max(1, min(self.config.connections_max,
                                          descriptors - self.config.descriptors_reserved))
        if self.connections_max < self.config.connections_max:
            log.warning("RPC connections capped at %d: RLIMIT_NOFILE %d minus descriptors_reserved %d",
                        self.connections_max, descriptors, self.config.descriptors_reserved)
        self.guard = ConnectionGuard(self.connections_max, self.config.connections_per_client_max,
                                     self.config.header_timeout_ms, self.config.idle_timeout_ms,
                                     lambda reason: node.metrics.rpc_connections_closed.labels(reason=reason).inc())
        self._replies = budget.ServerBudget(self.config.replies_bytes_max)
        self.app = web.Application(client_max_size=self.config.body_bytes_max, middlewares=[self._track])
        self.app.router.add_post("/", self.handle_post)
        self.app.router.add_get("/health", self.handle_health)
        self.app.router.add_get("/metrics", self.handle_metrics)
        self.app.router.add_get("/ws", self.handle_ws)
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._stall_probe: asyncio.Future[None] | None = None
        self.port = self.config.port

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        # Our own listener instead of web.TCPSite: each connection passes the guard first.
        self._listener = await asyncio.get_running_loop().create_server(
            lambda: GuardedProtocol(self.guard, server), self.config.host, self.config.port, reuse_address=True)
        # port 0 asks the OS for a free port: read back the one it gave
        self.port = self._listener.sockets[0].getsockname()[1]
        self.guard.start()
        self._stall_probe = asyncio.ensure_future(self.node.metrics.watch_loop_stalls())
        log.info("RPC on http://%s:%d (at most %d connections)", self.config.host, self.port, self.connections_max)

    async def stop(self) -> None:
        self.guard.stop()
        if self._stall_probe is not None:
            self._stall_probe.cancel()
        if self._listener is not None:
            self._listener.close()
        for socket in list(self.hub.sockets):
            await socket.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self.methods.close()

    @web.middleware
    async def _track(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Marks the connection as in a handler: the guard's header and idle timeouts
        apply only between requests."""
        self.guard.handler_started(request.transport)
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            self.guard.handler_done(request.transport)

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
            with self._budget() as shared:
                replies = [r for r in await asyncio.gather(*(self.call(item, shared) for item in payload)) if r]
                return _raw_json("[" + ",".join(replies) + "]") if replies else web.Response(status=204)
        with self._budget() as shared:
            reply = await self.call(payload, shared)
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
            text = await self.call({"jsonrpc": "2.0", "id": 0, "method": method, "params": list(params)}, shared)
        assert text is not None, "a request with an id gets a reply"
        reply = json.loads(text)
        if "error" in reply:
            error = reply["error"]
            raise RpcError(error["code"], error["message"], error.get("data"))
        return reply["result"]

    async def call(self, request: Any, shared: budget.BatchBudget) -> str | None:
        """One JSON-RPC request object -> its encoded response (None for a notification),
        within the byte budget `shared` (its batch's)."""
        own = budget.CallBudget(shared)
        budget.current.set(own)
        reply = await self._reply(request)
        if reply is None:
            return None
        text = json.dumps(reply)
        try:
            own.charge(len(text))
        except RpcError as exc:
            self.node.metrics.rpc_requests.labels(method="over-budget", outcome=str(exc.code)).inc()
            text = json.dumps(_error(reply.get("id"), exc))
        return text

    async def _reply(self, request: Any) -> dict[str, Any] | None:
        well_formed = isinstance(request, dict) and request.get("jsonrpc") == "2.0"
        if not well_formed or not isinstance(request.get("method"), str):
            return _error(request.get("id") if isinstance(request, dict) else None,
                          RpcError(INVALID_REQUEST, "invalid request"))
        request_id = request.get("id")
        method = request["method"]
        handler = self.methods.table.get(method)
        try:
            if handler is None:
                raise RpcError(METHOD_NOT_FOUND, f"method not found: {method[:64]}")
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

    async def handle_health(self, request: web.Request) -> web.Response:
        synced, reason = self.node.is_synced()
        usage, full = self.node.store.usage(), self.node.storage_full
        body = {"status": "ok" if synced else "unavailable", "reason": reason, "height": self.node.chain.height,
                "rpcConnections": len(self.guard.connections),
                "storage": {"mapBytes": usage.map_bytes, "usedBytes": usage.used_bytes,
                            "diskFreeBytes": usage.disk_free_bytes, "full": full.reason if full else None}}
        return _json(body, status=200 if synced else 503)

    async def handle_metrics(self, request: web.Request) -> web.Response:
        self.node.metrics.observe_loop(self.node)
        self.node.metrics.rpc_connections.set(len(self.guard.connections))
        self.node.metrics.observe_storage(self.node.store.usage())
        return web.Response(body=self.node.metrics.render(), content_type="text/plain", charset="utf-8")

    # WebSocket ----------------------------------------------------------------------------
    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
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
                await socket.queue.put(await self._ws_request(socket, message.data))
        finally:
            sender.cancel()
            self.hub.close(socket)
        return ws

    async def _ws_sender(self, socket: Any) -> None:
        while True:
            message = await socket.queue.get()
            await socket.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def _ws_request(self, socket: Any, text: str) -> dict[str, Any] | str:
        try:
            request = json.loads(text)
        except ValueError:
            return _error(None, RpcError(PARSE_ERROR, "parse error"))
        if not isinstance(request, dict):
            return _error(None, RpcError(INVALID_REQUEST, "invalid request"))
        method, params, request_id = request.get("method"), request.get("params", []), request.get("id")
        try:
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
            reply = await self.call(request, shared)
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
