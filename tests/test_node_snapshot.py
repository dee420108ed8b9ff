"""Joining without replaying from genesis, on real node processes over loopback (issue 16):
three bookkeepers make a state snapshot every 4 blocks (node0 also prunes old block
bodies and the trie nodes of old states); a fresh observer started with `--sync snapshot`
restores the newest one, refuses
the peer whose chunk files were corrupted on disk, agrees on every root with the
bookkeepers and keeps following; the pruned node still answers its head and proofs, and
answers pruned blocks with a typed error; `verify` checks the joined store from its base."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from chain.state import account_key
from client import GridClient, RpcCallError
from crypto import KeyPair, keccak256
from runtime.cluster import ROOT, ClusterProcesses, account_keys, free_base_port, init_cluster
from tests.cluster_support import rpc_urls

pytestmark = pytest.mark.timeout(300)

# ~350 KB of state: five chunks or more, so that parts are asked of each of the three
# bookkeepers in turn before the restore ends
FUNDED_ACCOUNTS = 3_000
INTERVAL = 4
KEEP_BLOCKS = 8
BLOCKS = 17  # snapshots at 4, 8, 12, 16; node0 prunes below 8 (the newest at or below 17 - 8)
NEWEST = 16
OBSERVER = 3


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    directory: Path = tmp_path_factory.mktemp("snapshot")
    funded = [(keccak256(i.to_bytes(8, "big")), 1) for i in range(FUNDED_ACCOUNTS)]
    layout = init_cluster(directory, 3, free_base_port(), consensus={"commit_timeout_ms": 1500}, observers=1,
                          funded=funded)
    for i in range(3):
        extra = f"keep_blocks = {KEEP_BLOCKS}\n" if i == 0 else ""
        _append(layout.node_dir(i) / "node.toml", f"[snapshot]\ninterval_blocks = {INTERVAL}\n{extra}")
    processes = ClusterProcesses(layout)
    joining = ClusterProcesses(layout, extra_args=["--sync", "snapshot"])
    try:
        for i in range(3):
            processes.start_node(i)
        processes.wait_healthy(timeout_s=180)
        yield processes, joining
    finally:
        joining.stop_all()
        processes.stop_all()


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _corrupt_chunks(snapshot_dir: Path, chunks: int) -> int:
    """Flip one byte in the middle of every chunk file (parts 1..chunks, not the block nor
    the schedule walk after them): the node serves them."""
    parts = [snapshot_dir / f"part-{i}.rlp" for i in range(1, chunks + 1)]
    for part in parts:
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0x01
        part.write_bytes(bytes(data))
    return len(parts)


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_observer_joins_by_snapshot_refuses_a_bad_peer_and_follows(cluster) -> None:
    processes, joining = cluster
    layout = processes.layout
    urls = rpc_urls(processes)
    accounts = _accounts(layout.directory)
    async with GridClient(urls[:3]) as bookkeepers:
        for i in range(BLOCKS):  # one transfer per block
            await bookkeepers.transact(accounts[i % 5], "token", "transfer", [accounts[5].address, 1 + i],
                                       timeout_s=60)
        clients = [GridClient(url) for url in urls]
        try:
            async def snapshots_made() -> bool:
                lists = [await c.snapshots() for c in clients[:3]]
                return all(any(s["height"] == NEWEST for s in listing["snapshots"]) for listing in lists)

            await _until(snapshots_made, f"every bookkeeper made the snapshot at {NEWEST}")
            listed = next(s for s in (await clients[1].snapshots())["snapshots"] if s["height"] == NEWEST)
            chunks = _corrupt_chunks(layout.node_dir(1) / "data" / "snapshots" / str(NEWEST), listed["chunks"])
            assert chunks >= 4, chunks

            joining.start_node(OBSERVER)
            joining.wait_healthy(timeout_s=180)
            observer = clients[OBSERVER]

            async def restored() -> bool:
                return (await observer.status())["height"] >= NEWEST

            await _until(restored, "the observer restored the snapshot")
            status = await observer.status()
            assert status["baseHeight"] == NEWEST and status["consensusState"] == "observer"
            assert (await observer.block(NEWEST))["hash"] == (await clients[2].block(NEWEST))["hash"]
            refused = 'gridchain_snapshot_parts_refused_total{reason="wrong-node"}'
            assert _metric(layout.rpc_port(OBSERVER), refused) >= 1
            log = (layout.node_dir(OBSERVER) / "node.log").read_text()
            assert "refused snapshot part" in log and "node1" in log and "state restored from the snapshot" in log

            # it keeps following, and executes: same state roots as every bookkeeper
            for i in range(3):
                await bookkeepers.transact(accounts[6], "token", "transfer", [accounts[7].address, 100 + i],
                                           timeout_s=60)
            head = (await clients[0].status())["height"]

            async def caught_up() -> bool:
                return (await observer.status())["height"] >= head

            await _until(caught_up, "the observer follows new blocks")
            blocks = [await c.block(head) for c in clients]
            assert len({(b["hash"], b["stateRoot"]) for b in blocks}) == 1, blocks
            assert (await observer.account(accounts[7].address)) == (await clients[1].account(accounts[7].address))
            # its rebuilt trie serves proofs that check against another node's header
            key = "0x" + account_key(accounts[7].address).hex()
            assert await observer.verified_proof("state", key, header_from=clients[2])
            # and a transaction sent to it is relayed and final
            receipt = await observer.transact(accounts[8], "token", "transfer", [accounts[9].address, 5], timeout_s=60)
            assert receipt.ok
        finally:
            for client in clients:
                await client.close()

    listing = subprocess.run([sys.executable, str(ROOT / "node.py"), "snapshots", "--rpc", urls[2]],
                             capture_output=True, text=True, timeout=60, check=True)
    assert f'"height": {NEWEST}' in listing.stdout
    joining.stop_node(OBSERVER)
    verify = subprocess.run([sys.executable, str(ROOT / "node.py"), "verify", "--data-dir",
                             str(layout.node_dir(OBSERVER) / "data")], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"the store starts at height {NEWEST}" in verify.stdout and "0 problems" in verify.stdout


async def test_pruned_node_answers_head_and_proofs_and_pruned_blocks_with_a_typed_error(cluster) -> None:
    processes, _ = cluster
    urls = rpc_urls(processes)
    accounts = _accounts(processes.layout.directory)
    async with GridClient(urls[0]) as pruned, GridClient(urls[1]) as archive:
        async def base_raised() -> bool:
            return (await pruned.status())["baseHeight"] >= 2 * INTERVAL

        await _until(base_raised, "node0 pruned old block bodies")
        base = (await pruned.status())["baseHeight"]
        assert base % INTERVAL == 0 and (await archive.status())["baseHeight"] == 0
        log = processes.layout.node_dir(0) / "node.log"

        async def states_collected() -> bool:  # chain/prune.py: the states below the base go too
            return "old states collected below height" in log.read_text()

        await _until(states_collected, "node0 collected the trie nodes of old states")
        with pytest.raises(RpcCallError) as refused:
            await pruned.block(base - 1)
        assert refused.value.code == -32004 and refused.value.reason == "pruned"
        assert refused.value.data["baseHeight"] == base
        assert (await archive.block(base - 1)) is not None
        head = await pruned.block("latest")
        assert head is not None and head["number"] >= BLOCKS
        assert (await pruned.block(base))["hash"] == (await archive.block(base))["hash"]
        key = "0x" + account_key(accounts[5].address).hex()
        assert await pruned.verified_proof("state", key, header_from=archive)
        # a transaction of a pruned block: found in the index, its block is gone
        first_tx = (await archive.block(1))["transactions"][0]
        with pytest.raises(RpcCallError) as refused:
            await pruned.receipt(first_tx)
        assert refused.value.code == -32004
        assert await archive.receipt(first_tx) is not None


def _accounts(directory: Path) -> list[KeyPair]:
    return account_keys(directory)
