"""`node.py explorer --rpc URL`: the explorer beside a node rather than inside it. The same
pages and APIs over the node's JSON-RPC (the SDK client, failing over along the URLs), its
own index file, and `/ws` relayed to the node's WebSocket so the page's live updates are
the node's own subscriptions. Each browser socket gets one upstream socket; messages pass
through unchanged, bounded like the node's (`WS_MESSAGE_BYTES_MAX`, `SOCKETS_MAX`)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
from aiohttp import web

from client import RpcClient
from explorer.api import Explorer, fetch_metrics

log = logging.getLogger("gridchain.explorer")
WS_MESSAGE_BYTES_MAX = 64 * 1024  # as the node's /ws
SOCKETS_MAX = 64  # relayed browser sockets at once (the node's websockets_max default)


class StandaloneExplorer:
    def __init__(self, rpc_urls: list[str], index_path: Path, header_rpc: str = "", follow: bool = True,
                 token: str | None = None, ca_file: Path | None = None) -> None:
        # `token`, `ca_file`: a node under [rpc] public_auth or https (its JSON-RPC and /ws)
        self.client = RpcClient(rpc_urls, token=token, ca_file=ca_file)
        self.explorer = Explorer(self.client, index_path, header_rpc, follow, metrics=self._metrics)
        self.app = web.Application()
        self.explorer.mount(self.app)
        self.app.router.add_get("/ws", self.relay)
        self.app.on_startup.append(self._follow)
        self.app.on_cleanup.append(self._close)
        self._sockets = 0
        self._follower: asyncio.Task[None] | None = None

    async def _metrics(self) -> str | None:
        """The node's /metrics with the client's token and CA (https, public_auth)."""
        return await fetch_metrics(await self.client.session(), self.client.url.rstrip("/") + "/metrics",
                                   self.client.headers, self.client.ssl)

    async def _follow(self, _: web.Application) -> None:
        if self.explorer.follow:
            self._follower = asyncio.ensure_future(self._heads())

    async def _heads(self) -> None:
        """Poke the indexer on every final block the node announces; reconnect on loss (the
        indexer's own poll covers the gap)."""
        while True:
            try:
                session = await self.client.session()
                async with session.ws_connect(self._ws_url(), max_msg_size=WS_MESSAGE_BYTES_MAX,
                                              headers=self.client.headers, ssl=self.client.ssl) as ws:
                    await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": ["newHeads"]})
                    async for message in ws:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        self.explorer.indexer.poke()
            except (aiohttp.ClientError, OSError) as exc:
                log.info("explorer: node WebSocket lost (%s); retrying", exc)
            await asyncio.sleep(self.explorer.indexer.poll_ms / 1000)

    async def _close(self, _: web.Application) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        await self.client.close()

    def _ws_url(self) -> str:
        return self.client.url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"

    async def relay(self, request: web.Request) -> web.StreamResponse:
        if self._sockets >= SOCKETS_MAX:
            raise web.HTTPServiceUnavailable(text="too many open WebSockets")
        browser = web.WebSocketResponse(max_msg_size=WS_MESSAGE_BYTES_MAX, heartbeat=30)
        await browser.prepare(request)
        self._sockets += 1
        try:
            session = await self.client.session()
            async with session.ws_connect(self._ws_url(), max_msg_size=WS_MESSAGE_BYTES_MAX,
                                          headers=self.client.headers, ssl=self.client.ssl) as node:
                async def down() -> None:
                    async for message in node:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        await browser.send_str(message.data)

                relayed = asyncio.ensure_future(down())
                try:
                    async for message in browser:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        await node.send_str(message.data)
                finally:
                    relayed.cancel()
        except (aiohttp.ClientError, OSError) as exc:
            log.info("explorer: relay to the node's WebSocket failed: %s", exc)
        finally:
            self._sockets -= 1
        await browser.close()
        return browser


async def serve(rpc_urls: list[str], index_path: Path, host: str, port: int, header_rpc: str, follow: bool,
                stop: asyncio.Event, token: str | None = None, ca_file: Path | None = None) -> None:
    explorer = StandaloneExplorer(rpc_urls, index_path, header_rpc, follow, token, ca_file)
    runner = web.AppRunner(explorer.app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("explorer on http://%s:%d for %s", host, port, ", ".join(rpc_urls))
    print(f"explorer on http://{host}:{port}/ (chain at {', '.join(rpc_urls)})", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
