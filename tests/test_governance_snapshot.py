"""Joining by snapshot across a bookkeeper-set change, on real node processes (issue 16):
a node that will become a bookkeeper joins by snapshot while it is still an observer, is
voted in (it takes bookkeeper 1's seat by a key rotation) and signs blocks from the switch
height on; then a fresh observer joins by a snapshot taken after the switch, whose block
the genesis set no longer certifies: it walks the schedule from genesis, restores, agrees
with the bookkeepers and follows; `verify` proves its base block by the kept walk."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from client import GridClient, RpcCallError
from client.contracts import Governance
from crypto import KeyPair
from runtime.cluster import ROOT, ClusterProcesses, free_base_port, init_cluster
from tests.cluster_support import rpc_urls
from tests.test_governance_cluster import DISTANCE, WAIT_S, admin_key, node_key, status_of, until

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


def governance_cli(directory: Path, url: str, *args: str) -> list[dict]:
    """`node.py governance ARGS` against the node at `url`; the events it printed."""
    key = args.index("--key") + 1
    argv = [*args[:key], str(directory / args[key]), *args[key + 1:]]
    result = subprocess.run([sys.executable, str(ROOT / "node.py"), "governance", *argv, "--rpc", url,
                             "--passphrase-file", str(directory / "passphrase")],
                            capture_output=True, text=True, timeout=WAIT_S, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def a_wrong_call_is_refused(url: str, key: KeyPair) -> None:
    """governance_vote admits a signed governance.vote only: a transfer is refused with
    -32602 and never admitted (the sender's nonce does not move)."""
    async with GridClient(url) as client:  # its own: its local nonce counts the refused one
        before = (await client.account(key.address))["pendingNonce"]
        tx = await client.build(key, "token", "transfer", [key.address, 1])
        with pytest.raises(RpcCallError) as refused:
            await client.submit(tx, "governance_vote")
        assert refused.value.code == -32602 and "governance.vote" in str(refused.value)
        assert (await client.account(key.address))["pendingNonce"] == before


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

        nodes = [node_key(processes, i) for i in range(3)] + [node_key(processes, NEW_BOOKKEEPER)]
        url = rpc_urls(processes)[0]
        await a_wrong_call_is_refused(url, admin_key(processes, 0))
        # The rotation through the CLI: each vote signed by `node.py governance` and sent by
        # RPC governance_propose / governance_vote.
        events = governance_cli(layout.directory, url, "propose", "replace", "--node-key",
                                str(layout.node_dir(1) / "node.key"), "--node-key",
                                "0x" + nodes[3].public_key.hex(), "--key", "admins/admin0.key")
        proposal = next(e["id"] for e in events if e["event"] == "Proposed")
        for voter in ("admins/admin1.key", "node0/node.key", "node2/node.key"):
            events = governance_cli(layout.directory, url, "vote", str(proposal), "--key", voter)
        start = next(e["start"] for e in events if e["event"] == "Accepted")
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
