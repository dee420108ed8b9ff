"""A node whose LMDB map fills, or whose disk does, pauses instead of dying, says why in
/health and /metrics, keeps serving reads, and catches up once there is space (issue 10).
Three real nodes over loopback TCP, in this process so that the test can take node0's
disk space away (store.disk_free_bytes) and give it back."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from chain import ChainStore
from client import GridClient
from crypto import KeyPair
from runtime.cluster import account_keys, free_base_port, init_cluster
from runtime.config import NodeConfig
from runtime.node import Node

pytestmark = pytest.mark.timeout(180)

MAP_BYTES = 512 << 10  # node0's map: a few blocks of 4 KB transactions fill it


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[list[Node], list[KeyPair], list[asyncio.Task]]]:
    layout = init_cluster(tmp_path / "cluster", 3, free_base_port(), consensus={"commit_timeout_ms": 1500})
    configs = [NodeConfig.load(layout.node_dir(i) / "node.toml") for i in range(3)]
    configs[0] = dataclasses.replace(configs[0], lmdb_map_bytes=MAP_BYTES, lmdb_map_bytes_max=64 << 20,
                                     disk_free_bytes_min=1 << 20, storage_retry_ms=200)
    nodes = [Node(config) for config in configs]
    tasks = [asyncio.create_task(node.run()) for node in nodes]
    accounts = account_keys(tmp_path / "cluster")
    try:
        await _until(lambda: all(len(n.network.connected_peers()) == 2 for n in nodes), "a connected cluster")
        yield nodes, accounts, tasks
    finally:
        for node in nodes:
            node.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)


async def _until(condition, what: str, timeout_s: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _fill_blocks(client: GridClient, accounts: list[KeyPair], rounds: int) -> None:
    """Blocks of 4 KB transactions (the call itself fails; the transaction is still stored)."""
    for _ in range(rounds):
        hashes = [await client.send(key, "token", "transfer", [key.address, 1, b"x" * 4096]) for key in accounts]
        await client.wait_receipt(hashes[-1], timeout_s=60)


async def _health(node: Node) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{node.rpc.port}/health", timeout=aiohttp.ClientTimeout(total=10)) as response:
        return response.status, await response.json()


async def test_full_map_pauses_the_node_and_it_catches_up_once_it_can_grow(cluster, monkeypatch) -> None:
    nodes, accounts, tasks = cluster
    node0 = nodes[0]
    monkeypatch.setattr(ChainStore, "disk_free_bytes", lambda self: 0)  # the map cannot grow
    async with GridClient(f"http://127.0.0.1:{nodes[1].rpc.port}") as client:
        for _ in range(40):
            if node0.storage_full is not None:
                break
            await _fill_blocks(client, accounts[:8], 1)
        assert node0.storage_full is not None and node0.storage_full.reason == "map-full"
        stalled_at = node0.chain.height
        status, health = await _health(node0)
        assert status == 503 and health["reason"].startswith("storage full: map-full")
        assert health["storage"]["full"] == "map-full" and health["storage"]["mapBytes"] == MAP_BYTES
        async with GridClient(f"http://127.0.0.1:{node0.rpc.port}") as client0:
            assert (await client0.status())["height"] == stalled_at  # reads go on
            with pytest.raises(Exception, match="storage-full"):
                await client0.send(accounts[9], "token", "transfer", [accounts[9].address, 1])
        await _fill_blocks(client, accounts[:4], 1)  # the others go on without node0
        assert nodes[1].chain.height > stalled_at and node0.chain.height == stalled_at
        # restarted with its map still full, node0 comes up and waits instead of dying
        node0.stop()
        await asyncio.wait_for(tasks[0], 30)
        node0 = nodes[0] = Node(node0.config)
        tasks[0] = asyncio.create_task(node0.run())
        await _until(lambda: node0.rpc.listening, "node0 serving again")
        status, health = await _health(node0)
        assert health["height"] == stalled_at and not tasks[0].done()
        monkeypatch.undo()  # disk space again: the map grows, node0 resumes and catches up
        await _until(lambda: node0.storage_full is None and node0.chain.height >= nodes[1].chain.height,
                     "node0 caught up")
        assert node0.store.usage().map_bytes > MAP_BYTES
        assert node0.metrics.storage_full._value.get() == 0
        await _fill_blocks(client, accounts[:2], 1)
        await _until(lambda: node0.chain.height == nodes[1].chain.height, "node0 follows new blocks")


async def test_full_disk_pauses_the_node_and_the_write_is_retried(cluster, monkeypatch) -> None:
    nodes, accounts, _ = cluster
    node0 = nodes[0]

    def no_space(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(node0.store, "_write_block", no_space)
    monkeypatch.setattr(node0.store, "disk_free_bytes", lambda: 0)
    async with GridClient(f"http://127.0.0.1:{nodes[1].rpc.port}") as client:
        await _fill_blocks(client, accounts[:2], 1)
        await _until(lambda: node0.storage_full is not None, "node0 paused")
        assert node0.storage_full is not None and node0.storage_full.reason == "disk-full"
        status, health = await _health(node0)
        assert status == 503 and health["storage"]["full"] == "disk-full"
        monkeypatch.undo()
        await _until(lambda: node0.storage_full is None and node0.chain.height == nodes[1].chain.height,
                     "node0 wrote the block once there was space")
