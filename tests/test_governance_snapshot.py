"""Joining by snapshot across a bookkeeper-set change, on real node processes (issue 16):
a node that will become a bookkeeper joins by snapshot while it is still an observer, is
voted in (it takes bookkeeper 1's seat by a key rotation) and signs blocks from the switch
height on; then a fresh observer joins by a snapshot taken after the switch, whose block
the genesis set no longer certifies: it walks the schedule from genesis, restores, agrees
with the bookkeepers and follows; `verify` proves its base block by the kept walk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from client import GridClient
from client.contracts import Governance
from runtime.cluster import ROOT, ClusterProcesses, free_base_port, init_cluster
from tests.cluster_support import rpc_urls
from tests.test_governance_cluster import DISTANCE, WAIT_S, accept, admin_key, node_key, status_of, until

pytestmark = pytest.mark.timeout(600)
INTERVAL = 4  # snapshots every 4 blocks; DISTANCE (4) blocks from acceptance to the switch
NEW_BOOKKEEPER, LATE_OBSERVER = 3, 4


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


async def snapshot_above(clients: list[GridClient], height: int) -> int:
    """The newest snapshot height above `height` that every client's node serves."""
    found = 0

    async def check() -> bool:
        nonlocal found
        held = [{s["height"] for s in (await c.snapshots())["snapshots"]} for c in clients]
        common = set.intersection(*held)
        found = max((h for h in common if h > height), default=0)
        return found > 0
    await until(check, f"a snapshot above height {height} on every node")
    return found


async def test_a_bookkeeper_and_an_observer_join_by_snapshot_across_a_set_change(tmp_path: Path) -> None:
    layout = init_cluster(tmp_path, 3, free_base_port(), observers=2,
                          contracts={"governance": {"activation_distance": DISTANCE}},
                          consensus={"empty_blocks": True, "empty_block_interval_ms": 300})
    for i in range(layout.nodes):
        _append(layout.node_dir(i) / "node.toml", f"[snapshot]\ninterval_blocks = {INTERVAL}\n")
    processes = ClusterProcesses(layout)
    joining = ClusterProcesses(layout, extra_args=["--sync", "snapshot"])
    clients = [GridClient(url) for url in rpc_urls(processes)]
    try:
        for i in range(3):
            processes.start_node(i)
        processes.wait_healthy(WAIT_S)
        first = await snapshot_above(clients[:3], 0)

        # The future bookkeeper joins by snapshot before it is voted in.
        joining.start_node(NEW_BOOKKEEPER)
        joining.wait_healthy(WAIT_S)

        async def restored() -> bool:
            status = await status_of(clients[NEW_BOOKKEEPER])
            return status["baseHeight"] >= first and status["consensusState"] == "observer"
        await until(restored, "the future bookkeeper restored a snapshot")

        admins = [admin_key(processes, j) for j in range(2)]
        nodes = [node_key(processes, i) for i in range(3)] + [node_key(processes, NEW_BOOKKEEPER)]
        rotation = [nodes[1].public_key, nodes[3].public_key]
        start = await accept(clients[0], "replace", rotation, 1, [admins[0], admins[1], nodes[0], nodes[2]])
        seated = [clients[0], clients[2], clients[NEW_BOOKKEEPER]]

        async def signing() -> bool:
            statuses = [await status_of(c) for c in seated]
            return all(s["epoch"] == start and s["height"] >= start + 2 for s in statuses) and \
                statuses[2]["consensusState"] != "observer"
        await until(signing, "the snapshot-joined node signs as bookkeeper 1")
        status = await status_of(clients[NEW_BOOKKEEPER])
        assert status["bookkeepers"][1]["publicKey"] == "0x" + nodes[3].public_key.hex()
        assert status["baseHeight"] < start  # it joined before it was voted in

        # A snapshot whose block the new set certified, and whose walk needs the change.
        height = await snapshot_above(seated[:2], start + DISTANCE)
        joining.start_node(LATE_OBSERVER)
        joining.wait_healthy(WAIT_S)
        observer = clients[LATE_OBSERVER]

        async def observer_restored() -> bool:
            return (await status_of(observer))["baseHeight"] >= height
        await until(observer_restored, "the late observer restored a snapshot after the switch")
        base = (await status_of(observer))["baseHeight"]
        assert (await observer.block(base))["hash"] == (await clients[0].block(base))["hash"]
        assert len(await Governance.epochs(observer)) == 2
        log = (layout.node_dir(LATE_OBSERVER) / "node.log").read_text()
        assert "state restored from the snapshot" in log and "refused snapshot part" not in log

        head = (await status_of(clients[0]))["height"]

        async def follows() -> bool:
            return (await status_of(observer))["height"] >= head + 2
        await until(follows, "the late observer follows blocks of the new set")
        block = await clients[2].block(head + 1)
        assert (await observer.block(head + 1))["hash"] == block["hash"]
    finally:
        for client in clients:
            await client.close()
        joining.stop_all()
        processes.stop_all()
    result = subprocess.run([sys.executable, str(ROOT / "node.py"), "verify", "--data-dir",
                             str(layout.node_dir(LATE_OBSERVER) / "data")], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0 and "0 problems" in result.stdout, result.stdout + result.stderr
