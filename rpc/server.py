"""aiohttp server: JSON-RPC 2.0 on POST / (batches up to batch_max), WebSocket /ws,
GET /health (200 in sync, 503 with the reason), GET /metrics (Prometheus text).

Malformed input gets its JSON-RPC error and never reaches the node's state.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from rpc.errors import INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, RpcError, invalid_params
from rpc.methods import Methods, limit_error
from rpc.subscriptions import ReceiptWaiters, Subscription, SubscriptionHub

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
        self.app = web.Application(client_max_size=self.config.body_bytes_max)
        self.app.router.add_post("/", self.handle_post)
        self.app.router.add_get("/health", self.handle_health)
        self.app.router.add_get("/metrics", self.handle_metrics)
        self.app.router.add_get("/ws", self.handle_ws)
        self._runner: web.AppRunner | None = None
        self.port = self.config.port

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        # port 0 asks the OS for a free port: read back the one it gave
        self.port = self._runner.addresses[0][1] if self._runner.addresses else self.config.port
        log.info("RPC on http://%s:%d", self.config.host, self.port)

    async def stop(self) -> None:
        for socket in list(self.hub.sockets):
            await socket.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # HTTP ---------------------------------------------------------------------------------
    async def handle_post(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _json(_error(None, limit_error("body_bytes_max", "request body too large")), status=413)
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
            replies = [reply for reply in await asyncio.gather(*(self.call(item) for item in payload)) if reply]
            return _json(replies) if replies else web.Response(status=204)
        reply = await self.call(payload)
        return _json(reply) if reply is not None else web.Response(status=204)

    async def call(self, request: Any) -> dict[str, Any] | None:
        """One JSON-RPC request object -> its response (None for a notification)."""
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
        body = {"status": "ok" if synced else "unavailable", "reason": reason, "height": self.node.chain.height}
        return _json(body, status=200 if synced else 503)

    async def handle_metrics(self, request: web.Request) -> web.Response:
        self.node.metrics.observe_loop(self.node)
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
            await socket.ws.send_json(message)

    async def _ws_request(self, socket: Any, text: str) -> dict[str, Any]:
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
        reply = await self.call(request)
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
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def _check_depth(value: Any, depth: int = 0) -> None:
    if depth > JSON_DEPTH_MAX:
        raise ValueError("JSON nested too deep")
    if isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _check_depth(item, depth + 1)
