"""A bookkeeper kill -9'd in the middle of finalizing a block, on a real 3-process cluster
(tests/crash_finalize.py picks the point), in each role: its store holds the block and the
consensus record that goes with it together, or neither; restarted, it follows the others,
and every node holds the same blocks and state roots, no transaction lost or doubled."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from chain import ChainStore
from client import GridClient
from consensus import LmdbStorage
from crypto import KeyPair
from runtime.cluster import ClusterProcesses, account_keys, free_base_port, init_cluster
from tests.cluster_support import rpc_urls

pytestmark = pytest.mark.timeout(420)

CRASH_HEIGHT = 3  # one transfer per block: the victim dies finalizing the third
# In view 0 (t = 1): node0 the primary (finalizes on the COMMIT; its FINAL never leaves, so
# the others finalize that block in a later view), node1 the follower (on the FINAL),
# node2 passive (on the FINAL carrying the block).
ROLES = {0: "primary", 1: "follower", 2: "passive"}
WRAPPER = Path(__file__).resolve().parent / "crash_finalize.py"


async def _transfer(client: GridClient, sender: KeyPair, recipient: bytes, amount: int) -> str:
    return await client.send(sender, "token", "transfer", [recipient, amount])


async def _heights(urls: list[str]) -> list[int]:
    heights = []
    for url in urls:
        async with GridClient(url) as client:
            heights.append((await client.status())["height"])
    return heights


@pytest.mark.parametrize("point", ["inside", "after"])
@pytest.mark.parametrize("victim", sorted(ROLES), ids=ROLES.values())
async def test_a_kill_during_a_finalize_leaves_block_and_record_together(tmp_path: Path, victim: int,
                                                                         point: str) -> None:
    layout = init_cluster(tmp_path / "cluster", 3, free_base_port(), consensus={"commit_timeout_ms": 1500})
    wrapper = [sys.executable, str(WRAPPER), str(CRASH_HEIGHT), point, "--"]
    processes = ClusterProcesses(layout, prefix=lambda i: wrapper if i == victim else [])
    processes.start_all()
    try:
        processes.wait_healthy()
        accounts = account_keys(layout.directory)
        urls = rpc_urls(processes)
        recipient = accounts[-1].address
        sent: list[str] = []
        async with GridClient([url for i, url in enumerate(urls) if i != victim]) as survivors:
            before = (await survivors.account(recipient))["balance"]
            for i in range(CRASH_HEIGHT):  # one at a time: each its own block
                sent.append(await _transfer(survivors, accounts[i], recipient, 1 + i))
                await survivors.wait_receipt(sent[-1], timeout_s=120)
        assert processes.processes[victim].wait(timeout=60) == -signal.SIGKILL, "it did not die in its Finalize"

        store = ChainStore(layout.node_dir(victim) / "data" / "chain")
        head, record = store.head_height(), LmdbStorage(store.env).load()
        store.close()
        if point == "inside":  # the transaction never committed: neither the block nor its record
            assert head == CRASH_HEIGHT - 1
            assert record.entry is None or record.entry.height == CRASH_HEIGHT
        else:  # committed: the block, and the record that truncated the log below it
            assert head == CRASH_HEIGHT and record.entry is None

        processes.prefix = None
        processes.start_node(victim)
        processes.wait_healthy()
        async with GridClient(urls[victim]) as restarted:
            for i in range(CRASH_HEIGHT, CRASH_HEIGHT + 2):  # through the restarted node
                sent.append(await _transfer(restarted, accounts[i], recipient, 1 + i))
                await restarted.wait_receipt(sent[-1], timeout_s=120)
        target = max(await _heights(urls))
        for _ in range(300):
            if min(await _heights(urls)) >= target:
                break
            await asyncio.sleep(0.2)
        assert min(await _heights(urls)) >= target, "a node did not reach the others' head"

        chains = []
        for url in urls:
            async with GridClient(url) as client:
                blocks = [await client.block(height) for height in range(1, target + 1)]
            chains.append([(b["hash"], b["stateRoot"], tuple(b["transactions"])) for b in blocks if b])
        assert chains[0] == chains[1] == chains[2] and len(chains[0]) == target, "the nodes' chains differ"
        final = [tx for _, _, txs in chains[0] for tx in txs]
        assert sorted(final) == sorted(sent), "a transaction lost or doubled"
        async with GridClient(urls[victim]) as client:
            assert (await client.account(recipient))["balance"] == before + sum(1 + i for i in range(len(sent)))
    finally:
        processes.stop_all()
