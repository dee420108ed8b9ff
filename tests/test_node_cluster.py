"""End to end on a real 3-process cluster over loopback TCP: transactions through the SDK,
receipts, proofs checked against another node's header, WebSocket notifications, bad input,
and the primary killed with SIGKILL."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from client import GridClient, RpcCallError
from runtime.cluster import ClusterProcesses
from tests.cluster_support import rpc_urls, running_cluster

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    directory: Path = tmp_path_factory.mktemp("cluster")
    with running_cluster(directory, consensus={"commit_timeout_ms": 1500}, observers=1) as running:
        yield running


async def test_transfers_are_final_on_every_node(cluster) -> None:
    processes, accounts = cluster
    urls = rpc_urls(processes)
    clients = [GridClient(url) for url in urls[:3]]
    try:
        recipient = accounts[5].address
        before = (await clients[0].account(recipient))["balance"]
        hashes = [await clients[i % 3].send(accounts[i], "token", "transfer", [recipient, 10 + i]) for i in range(3)]
        receipts = [await clients[(i + 1) % 3].wait_receipt(h, timeout_s=30) for i, h in enumerate(hashes)]
        assert all(r.ok for r in receipts)
        assert receipts[0].events[0]["amount"] == 10
        height = max(r.block_number for r in receipts)
        blocks = [await c.block(height) for c in clients]
        for _ in range(50):
            if all(b is not None for b in blocks):
                break
            await asyncio.sleep(0.1)
            blocks = [await c.block(height) for c in clients]
        assert len({b["hash"] for b in blocks}) == 1, "nodes disagree on a final block"
        assert blocks[0]["commit"] and len(blocks[0]["commit"]["votes"]) == 2
        assert (await clients[2].account(recipient))["balance"] == before + 10 + 11 + 12
        # proof from node 0, header from node 2
        value = await clients[0].verified_proof("receipt", hashes[1], header_from=clients[2])
        assert value
    finally:
        for client in clients:
            await client.close()


async def test_websocket_notifies_new_heads_and_events(cluster) -> None:
    processes, accounts = cluster
    url = rpc_urls(processes)[1]
    async with GridClient(url) as client:
        heads = client.subscribe("newHeads")
        events = client.subscribe("events", {"contract": "token", "name": "Transfer",
                                             "fields": {"to": "0x" + accounts[7].address.hex()}})
        head_task = asyncio.ensure_future(heads.__anext__())
        event_task = asyncio.ensure_future(events.__anext__())
        # The subscriptions register some time after these tasks start (later on a loaded
        # machine): send until both have seen something instead of guessing how long that is.
        async with GridClient(url) as sender:
            await sender.transact(accounts[3], "token", "transfer", [accounts[6].address, 1])
            for _ in range(10):
                await sender.transact(accounts[3], "token", "transfer", [accounts[7].address, 2])
                await asyncio.wait({head_task, event_task}, timeout=2)
                if head_task.done() and event_task.done():
                    break
        head = await asyncio.wait_for(head_task, 20)
        event = await asyncio.wait_for(event_task, 20)
        assert head["number"] >= 1
        assert event["fields"]["amount"] == 2 and event["name"] == "Transfer"
        await heads.aclose()
        await events.aclose()


async def test_bad_input_gets_errors_and_changes_nothing(cluster) -> None:
    processes, accounts = cluster
    url = rpc_urls(processes)[0]
    async with aiohttp.ClientSession() as session, GridClient(url) as client:
        height_before = (await client.status())["height"]

        async def post(data: bytes) -> tuple[int, dict]:
            async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
                return r.status, await r.json(content_type=None) if r.status != 204 else {}

        assert (await post(b"{not json"))[1]["error"]["code"] == -32700
        assert (await post(b'{"jsonrpc":"2.0","id":1,"method":"nope"}'))[1]["error"]["code"] == -32601
        negative_block = b'{"jsonrpc":"2.0","id":1,"method":"chain_getBlock","params":[-1]}'
        assert (await post(negative_block))[1]["error"]["code"] == -32602
        assert (await post(b'[1,2]'))[1][0]["error"]["code"] == -32600
        assert (await post(b"[" * 5000 + b"]" * 5000))[1]["error"]["code"] == -32700
        oversize = b'{"jsonrpc":"2.0","id":1,"method":"chain_status","params":["' + b"x" * (2 << 20) + b'"]}'
        status, _ = await post(oversize)
        assert status == 413
        with pytest.raises(RpcCallError) as caught:
            await client.rpc.call("tx_send", "0x" + "00" * 50)
        assert caught.value.code == -32000 and caught.value.reason == "malformed"
        tx = await client.build(accounts[4], "token", "transfer", [accounts[5].address, 1])
        forged = tx.copy(value=tx.value + 1)
        with pytest.raises(RpcCallError) as caught:
            await client.submit(forged)
        assert caught.value.reason == "bad-signature"
        status_after = await client.status()
        assert status_after["height"] == height_before and status_after["mempool"] == 0
    health = await _get(url + "/health")
    assert health[0] == 200
    metrics = await _get(url + "/metrics")
    assert b"gridchain_height" in metrics[1]


async def _get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


async def test_primary_killed_survivors_commit_and_restart_catches_up(cluster) -> None:
    processes: ClusterProcesses
    processes, accounts = cluster
    urls = rpc_urls(processes)
    async with GridClient(urls[1]) as probe:
        primary_name = (await probe.status())["primary"]
    primary = int(primary_name.removeprefix("node"))
    survivors = [u for i, u in enumerate(urls[:3]) if i != primary]
    processes.stop_node(primary, signal.SIGKILL)
    async with GridClient(survivors) as client:
        receipt = await client.transact(accounts[8], "token", "transfer", [accounts[9].address, 5], timeout_s=60)
        assert receipt.ok
        status = await client.status()
        assert status["primary"] != primary_name
        target = status["height"]
    processes.start_node(primary)
    processes.wait_healthy()
    async with GridClient(urls[primary]) as restarted:
        for _ in range(100):
            if (await restarted.status())["height"] >= target:
                break
            await asyncio.sleep(0.2)
        assert (await restarted.status())["height"] >= target
        block = await restarted.block(receipt.block_number)
        assert block["hash"] == "0x" + receipt.block_hash.hex()


async def test_observer_follows_by_block_sync_and_relays_transactions(cluster) -> None:
    processes, accounts = cluster
    urls = rpc_urls(processes)
    observer_url = urls[3]
    async with GridClient(observer_url) as observer, GridClient(urls[:3]) as bookkeepers:
        status = await observer.status()
        assert status["consensusState"] == "observer" and status["view"] is None
        receipt = await observer.transact(accounts[2], "token", "transfer", [accounts[1].address, 3], timeout_s=30)
        block = await bookkeepers.block(receipt.block_number)
        assert block["hash"] == "0x" + receipt.block_hash.hex()
        assert (await observer.block(receipt.block_number))["commit"] == block["commit"]
