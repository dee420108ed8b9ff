"""What an outsider can exhaust through RPC, against one in-process node (issue 10):
slowloris and idle connections, connection caps, reply byte budgets, views' time bound,
out-of-range integer arguments. Timeouts are shrunk so that each case takes a second or
two; every wait is for a condition, with a generous bound."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import resource
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from runtime.cluster import free_base_port, init_cluster
from runtime.config import NodeConfig
from runtime.descriptors import UNLIMITED_SOFT
from runtime.node import Node

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    layout = init_cluster(tmp_path / "cluster", 3, free_base_port())
    config = NodeConfig.load(layout.node_dir(0) / "node.toml")
    rpc = dataclasses.replace(config.rpc, connections_per_client_max=8, connections_max=12,
                              header_timeout_ms=600, idle_timeout_ms=1_500,
                              response_bytes_max=5_000, batch_response_bytes_max=20_000,
                              replies_bytes_max=25_000)
    running = Node(dataclasses.replace(config, rpc=rpc))
    task = asyncio.create_task(running.run())
    await _until(lambda: running.rpc.listening, "RPC listening")
    try:
        yield running
    finally:
        running.stop()
        await asyncio.wait_for(task, 30)


async def _until(condition, what: str, timeout_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _post(node: Node, body: object) -> object:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{node.rpc.port}/", json=body, timeout=aiohttp.ClientTimeout(total=20)) as response:
        return await response.json(content_type=None)


def _call(method: str, *params: object, request_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}


async def _closed(reader: asyncio.StreamReader, timeout_s: float = 15) -> bytes:
    """Everything the node sends before it closes the connection."""
    data = b""
    async with asyncio.timeout(timeout_s):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def test_slowloris_connections_are_capped_then_closed(node: Node) -> None:
    port = node.rpc.port
    slow = []
    for _ in range(8):  # connections_per_client_max from one address, headers never finished
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\n")
        slow.append((reader, writer))
    refused = [await asyncio.open_connection("127.0.0.1", port) for _ in range(12)]
    try:
        await _until(lambda: len(node.rpc.guard.connections) == 8, "8 connections admitted")
        for reader, _ in refused:  # each gets one HTTP 503 with JSON-RPC -32005 naming the cap
            head, _, body = (await _closed(reader)).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503"), head
            error = json.loads(body)["error"]
            assert error["code"] == -32005 and error["data"]["limit"] == "connections_per_client_max"
        # the slow ones are cut once header_timeout_ms passed: their descriptors come back
        for reader, _ in slow:
            assert await _closed(reader) == b""
        assert not node.rpc.guard.connections
        closed = node.metrics.rpc_connections_closed
        assert closed.labels(reason="header-timeout")._value.get() == 8
        assert closed.labels(reason="connections_per_client_max")._value.get() == 12
        assert (await _post(node, _call("chain_status")))["result"]["height"] == 0  # type: ignore[index]
    finally:
        for _, writer in slow + refused:
            writer.close()


async def test_idle_connection_is_closed(node: Node) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.rpc.port)
    try:
        assert await _closed(reader) == b""
        assert node.metrics.rpc_connections_closed.labels(reason="idle")._value.get() == 1
    finally:
        writer.close()


async def test_slow_body_gets_a_timeout(node: Node) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.rpc.port)
    try:
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{")
        async with asyncio.timeout(15):
            data = await reader.read(65536)
        assert data.startswith(b"HTTP/1.1 408"), data
        assert b'"header_timeout_ms"' in data
    finally:
        writer.close()


async def test_reply_and_batch_byte_budgets(node: Node) -> None:
    # One reply over response_bytes_max (5,000): contract_list is ~5.5 KB of JSON.
    reply = await _post(node, _call("contract_list"))
    assert reply["error"]["code"] == -32005 and reply["error"]["data"] == {"limit": "response_bytes_max"}  # type: ignore[index]
    # A batch: full genesis blocks until batch_response_bytes_max (20,000) is spent.
    replies = await _post(node, [_call("chain_getBlock", 0, True, request_id=k) for k in range(100)])
    assert isinstance(replies, list) and len(replies) == 100
    ok = [r for r in replies if "result" in r]
    over = [r for r in replies if "error" in r]
    assert ok and over, "some replies fit the batch budget, the rest do not"
    assert all(r["error"]["code"] == -32005 and r["error"]["data"]["limit"] == "batch_response_bytes_max"
               for r in over)
    assert sum(len(json.dumps(r)) for r in ok) <= 20_000


async def test_replies_being_built_share_one_budget(node: Node) -> None:
    blocks = [_call("chain_getBlock", 0, True, request_id=k) for k in range(8)]
    # A holds ~7 KB of replies_bytes_max (25,000) while its receipt wait lasts
    waiting = asyncio.create_task(_post(node, [*blocks[:6], _call("tx_receipt", "0x" + "11" * 32, 3000,
                                                                    request_id=99)]))
    await _until(lambda: node.rpc._replies.left < 25_000, "the first batch holding its replies")
    during = await _post(node, blocks)
    assert any(r.get("error", {}).get("data", {}).get("limit") == "replies_bytes_max" for r in during), during
    assert all("result" in r for r in await waiting)
    after = await _post(node, blocks)
    assert all("result" in r for r in after) and node.rpc._replies.left == 25_000


async def test_out_of_range_integers_are_invalid_params(node: Node) -> None:
    for value in (2**300, -1, 2**64):
        reply = await _post(node, _call("contract_call", "dsc", "request", [value]))
        assert reply["error"]["code"] == -32602, reply  # type: ignore[index]
    for params in (["dsc", "request", 7], ["0x00", "x", []]):
        reply = await _post(node, _call("contract_call", *params))
        assert reply["error"]["code"] == -32602, reply  # type: ignore[index]
    reply = await _post(node, _call("proof_state", "0x00", True))
    assert reply["error"]["code"] == -32602  # type: ignore[index]


async def test_views_have_a_time_bound(node: Node) -> None:
    node.config = dataclasses.replace(node.config, rpc=dataclasses.replace(node.config.rpc, view_ms_max=0))
    reply = await _post(node, _call("contract_call", "dsc", "request", [0]))
    assert reply["error"]["code"] == -32002 and reply["error"]["data"]["reason"] == "view-timeout", reply  # type: ignore[index]


async def test_descriptor_limit_raised_and_connection_cap_sized_from_it(node: Node) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == (hard if hard != resource.RLIM_INFINITY else UNLIMITED_SOFT)
    assert node.rpc.connections_max == min(node.config.rpc.connections_max, soft - node.config.rpc.descriptors_reserved)
