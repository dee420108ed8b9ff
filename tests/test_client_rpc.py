"""client/rpc.py against a real aiohttp server on loopback: batches in call order, a batch
refused whole, failover past a dead port, a reply over the byte limit, a server that is not
JSON-RPC, and the back-pressure pause."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from chain import TxReason
from client import BACKPRESSURE, Backoff, NodeUnavailable, ReplyTooLarge, RpcCallError, RpcClient


def _answer(request: dict) -> dict:
    if request["method"] == "fail":
        return {"jsonrpc": "2.0", "id": request["id"],
                "error": {"code": -32010, "message": "rejected", "data": {"reason": "nonce-gap"}}}
    return {"jsonrpc": "2.0", "id": request["id"], "result": [request["method"], *request["params"]]}


async def _rpc(request: web.Request) -> web.Response:
    payload = json.loads(await request.read())
    if isinstance(payload, list):
        if len(payload) > 3:  # as the node's batch_max: the whole batch refused
            return web.json_response({"jsonrpc": "2.0", "id": None,
                                      "error": {"code": -32005, "message": "batch", "data": {"limit": "batch_max"}}})
        return web.json_response([_answer(r) for r in reversed(payload)])  # any order: matched by id
    if payload["method"] == "big":
        return web.json_response({"jsonrpc": "2.0", "id": payload["id"], "result": "x" * 5000})
    return web.json_response(_answer(payload))


async def _not_rpc(request: web.Request) -> web.Response:
    return web.Response(text="<html>hello</html>")


async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _dead_url() -> str:
    with socket.socket() as s:  # a port just freed: nothing listens on it
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, str]]:
    rpc, rpc_url = await _serve(_rpc)
    other, other_url = await _serve(_not_rpc)
    yield rpc_url, other_url
    await rpc.cleanup()
    await other.cleanup()


async def test_a_batch_gives_one_reply_per_call_in_call_order(servers) -> None:
    async with RpcClient([servers[0]]) as client:
        replies = await client.batch([("a", [1]), ("fail", []), ("b", [2])])
        assert [r.result for r in replies] == [["a", 1], None, ["b", 2]]
        assert replies[1].reason == TxReason.NONCE_GAP and replies[1].error is not None
        with pytest.raises(RpcCallError) as info:
            replies[1].value()
        assert info.value.code == -32010
        refused = await client.batch([("a", [])] * 4)
        assert len(refused) == 4 and all(r.error is not None and r.error.data == {"limit": "batch_max"}
                                         for r in refused)


async def test_a_dead_node_is_passed_over_and_asked_last(servers) -> None:
    dead = _dead_url()
    async with RpcClient([dead, servers[0]]) as client:
        assert await client.call("a", 7) == ["a", 7]
        assert client.url == servers[0] and client.answering() == 1
        assert await client.call("a", 8, node=0) == ["a", 8]  # the dead one is tried last
    async with RpcClient([dead, servers[0]], failover=False) as client:
        with pytest.raises(NodeUnavailable) as info:
            await client.call("a", node=0)
        assert info.value.connect_failed, "nothing reached the node"
        assert await client.call("a", node=1) == ["a"]


async def test_what_is_not_a_node_is_unavailable_but_may_have_received_the_call(servers) -> None:
    async with RpcClient([servers[1]]) as client:
        with pytest.raises(NodeUnavailable) as info:
            await client.call("a")
        assert not info.value.connect_failed and "not a gridchain JSON-RPC endpoint" in str(info.value)


async def test_a_reply_over_the_byte_limit_is_refused(servers) -> None:
    async with RpcClient([servers[0]], reply_bytes_max=4096) as client:
        assert await client.call("a") == ["a"]
        with pytest.raises(ReplyTooLarge) as info:
            await client.call("big")
        assert info.value.limit == 4096


def test_backoff_doubles_while_pushed_back_and_resets_on_a_plain_retry() -> None:
    backoff = Backoff(0.05, 0.3)
    assert [backoff.next(True) for _ in range(4)] == [0.1, 0.2, 0.3, 0.3]
    assert backoff.next(False) == 0.05 and backoff.next(True) == 0.1
    assert BACKPRESSURE == {TxReason.NODE_BUSY, TxReason.MEMPOOL_FULL}
