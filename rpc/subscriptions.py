"""Push side of the API: WebSocket subscriptions (newHeads, contract events with a filter)
and the waiters behind tx_receipt's wait. Fed by the node when a block becomes final."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from chain.execution import ExecutedBlock
from rpc.encoding import event_json, header_json, hex_bytes


class WaitersFull(Exception):
    """receipt_waiters_max concurrent waits are open already."""


class ReceiptWaiters:
    """tx hash -> an event set when a final block includes it. At most `waiters_max`
    hashes are waited on at once; an entry leaves when its last waiter does."""

    def __init__(self, waiters_max: int) -> None:
        self.waiters_max = waiters_max
        self._waiting: dict[bytes, tuple[asyncio.Event, int]] = {}

    async def wait(self, tx_hash: bytes) -> None:
        event, count = self._waiting.get(tx_hash, (None, 0))
        if event is None:
            if len(self._waiting) >= self.waiters_max:
                raise WaitersFull(f"{self.waiters_max} receipt waits open")
            event = asyncio.Event()
        self._waiting[tx_hash] = (event, count + 1)
        try:
            await event.wait()
        finally:
            _, left = self._waiting.get(tx_hash, (event, 1))
            if left <= 1:
                self._waiting.pop(tx_hash, None)
            else:
                self._waiting[tx_hash] = (event, left - 1)

    def block_final(self, executed: ExecutedBlock) -> None:
        for tx in executed.block.transactions:
            entry = self._waiting.get(tx.hash)
            if entry is not None:
                entry[0].set()


@dataclass
class Subscription:
    id: str
    kind: str  # "newHeads" or "events"
    contract: str | None = None  # 0x address filter
    name: str | None = None  # event name filter
    fields: dict[str, Any] = field(default_factory=dict)  # field == value filters (JSON form)

    def matches(self, event: dict[str, Any]) -> bool:
        if self.contract is not None and event["contract"] != self.contract:
            return False
        if self.name is not None and event["name"] != self.name:
            return False
        return all(event["fields"].get(k) == v for k, v in self.fields.items())


@dataclass
class Socket:
    ws: web.WebSocketResponse
    queue: asyncio.Queue[dict[str, Any] | str]  # notifications, and replies already encoded
    subscriptions: dict[str, Subscription] = field(default_factory=dict)


class SubscriptionHub:
    def __init__(self, send_queue_max: int) -> None:
        self.send_queue_max = send_queue_max
        self.sockets: list[Socket] = []
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        return hex(next(self._ids))

    def open(self, ws: web.WebSocketResponse) -> Socket:
        socket = Socket(ws, asyncio.Queue(self.send_queue_max))
        self.sockets.append(socket)
        return socket

    def close(self, socket: Socket) -> None:
        if socket in self.sockets:
            self.sockets.remove(socket)

    def block_final(self, executed: ExecutedBlock) -> None:
        if not self.sockets:
            return
        head = header_json(executed.block.header)
        events: list[dict[str, Any]] = []
        txs = executed.block.transactions
        for index, receipt in enumerate(executed.receipts):
            tx_hash = hex_bytes(txs[index].hash) if index < len(txs) else None  # None: end-of-block
            events.extend({**event_json(e), "blockNumber": head["number"], "transactionHash": tx_hash}
                          for e in receipt.events)
        for socket in list(self.sockets):
            for sub in socket.subscriptions.values():
                if sub.kind == "newHeads":
                    self._push(socket, sub, head)
                else:
                    for event in events:
                        if sub.matches(event):
                            self._push(socket, sub, event)

    def _push(self, socket: Socket, sub: Subscription, result: dict[str, Any]) -> None:
        message = {"jsonrpc": "2.0", "method": "subscription",
                   "params": {"subscription": sub.id, "result": result}}
        try:
            socket.queue.put_nowait(message)
        except asyncio.QueueFull:
            # A client that does not read its notifications is cut off, not buffered forever.
            self.close(socket)
            asyncio.ensure_future(socket.ws.close(code=1008, message=b"notification queue full"))
