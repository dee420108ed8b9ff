"""Joining a chain of 100,000 accounts and 10,000 blocks: by state snapshot vs by replay
from genesis (issue 16), on real node processes over loopback.

The chain is built by direct execution, as bench.ledger does (the proposer's build, then
append; each block certified and made final with the bookkeepers' own keys): producing
10,000 blocks through consensus would take hours on the shared 2-core box, and what is
measured here is the joining node's side. The store is copied to the three bookkeepers,
each also gets the snapshot at --snapshot-height written by runtime.snapshots (the bytes
every node would make), and the cluster runs. Then two fresh observers join one after the
other, `--sync snapshot` and `--sync blocks`; each is timed from its process start to its
head being the bookkeepers' head with the same state root. Both times include the node's
start (reading a genesis of 100,000 accounts), reported apart as `startup_s`.

    python -m bench.snapshot --json OUT [--accounts 100000] [--blocks 10000] [--block-txs 5]
                             [--snapshot-height 9500] [--timeout-s 3600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chain import Block, ChainStore, CommitCertificate, Transaction, Vote
from chain.certificate import commit_message, final_message, finality_signers, synchronous_group
from chain.chain import Chain
from chain.epochwalk import walk_steps
from client import GridClient, NodeUnavailable
from consensus.statesync import SnapshotConfig
from contracts import build_contracts, load_genesis
from contracts.addresses import TOKEN
from crypto import KeyPair, keccak256
from runtime.cluster import ClusterLayout, ClusterProcesses, discover, free_base_port, init_cluster, node_key
from runtime.snapshots import SnapshotFiles
from vm import Engine

SENDERS = 1_000  # funded accounts with keys; the others only receive
SNAPSHOT_OBSERVER, REPLAY_OBSERVER = 3, 4
POLL_S = 0.5
PROGRESS_S = 30  # a line on stderr this often while an observer catches up


def certify(block: Block, keys: list[KeyPair], chain_id: int) -> Block:
    """`block` with view 0's certificate and finality proof (tests/support.py does the same)."""
    n, t = len(keys), (len(keys) - 1) // 2
    votes = [Vote(m, keys[m].sign(commit_message(chain_id, 0, block.number, block.hash)))
             for m in synchronous_group(0, n, t)]
    finals = [Vote(m, keys[m].sign(final_message(chain_id, 0, block.number, block.hash)))
              for m in finality_signers(0, n, t)]
    return block.with_certificate(CommitCertificate(0, votes, finals))


def fund_receivers(directory: Path, count: int) -> list[bytes]:
    """Add `count` accounts of 1 token each to the cluster's genesis (no keys: they receive)."""
    receivers = [keccak256(i.to_bytes(8, "big"))[:20] for i in range(count)]
    genesis = directory / "genesis.toml"
    text = genesis.read_text()
    at = text.index("[limits]")  # with the other [[accounts]], before the first plain table
    entries = "".join(f'[[accounts]]\naddress = "0x{r.hex()}"\nbalance = 1\n\n' for r in receivers)
    genesis.write_text(text[:at] + entries + text[at:])
    return receivers


def build_chain(directory: Path, senders: list[KeyPair], receivers: list[bytes], blocks: int, block_txs: int,
                snapshot_height: int) -> dict[str, Any]:
    """Fill node0's store with `blocks` final blocks of transfers; copy it and the snapshot
    at `snapshot_height` to the other bookkeepers."""
    genesis = load_genesis(directory / "genesis.toml")
    layout = discover(directory)
    keys = [node_key(layout, i) for i in range(3)]
    store = ChainStore(directory / "node0" / "data" / "chain")
    chain = Chain(store, genesis, Engine(build_contracts(genesis.contract_params)))
    nonces = [0] * len(senders)
    started = time.perf_counter()
    snapshot_block: Block | None = None
    for height in range(1, blocks + 1):
        txs = []
        for j in range(block_txs):
            k = (height * block_txs + j) % len(senders)
            txs.append(Transaction.create(senders[k], chain_id=genesis.chain_id, nonce=nonces[k], to=TOKEN,
                                          method="transfer", args=[receivers[(height * 7919 + j) % len(receivers)], 1]))
            nonces[k] += 1
        executed, rejected = chain.build(txs, timestamp_ms=genesis.timestamp_ms + height, proposer=0, view=0)
        assert not rejected, rejected[:1]
        block = certify(executed.block, keys, genesis.chain_id)
        chain.append(block)
        if height == snapshot_height:
            snapshot_block = block
        if height % 500 == 0:
            print(f"  built block {height}/{blocks} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    build_s = time.perf_counter() - started
    assert snapshot_block is not None
    started = time.perf_counter()
    walk = list(walk_steps(chain, snapshot_block.number, chain.activation_distance()))
    walk_s = time.perf_counter() - started
    files = SnapshotFiles(directory / "node0" / "data" / "snapshots", SnapshotConfig())
    manifest = files.write(snapshot_block, store, walk)
    snapshot_s = time.perf_counter() - started
    head = chain.head
    store.close()
    for i in (1, 2):
        shutil.copytree(directory / "node0" / "data", directory / f"node{i}" / "data", dirs_exist_ok=True)
    return {"build_s": round(build_s, 1), "snapshot_make_s": round(snapshot_s, 2),
            "snapshot_walk_steps": len(walk), "snapshot_walk_parts": manifest.walk,
            "snapshot_walk_bytes": sum(map(len, walk)), "snapshot_walk_make_s": round(walk_s, 2),
            "snapshot_chunks": manifest.chunks,
            "snapshot_nodes": manifest.nodes, "snapshot_bytes": manifest.bytes,
            "head": head.number, "head_state_root": "0x" + head.header.state_root.hex()}


def time_join(processes: ClusterProcesses, node: int, head: int, state_root: str, timeout_s: float) -> dict[str, Any]:
    """Start observer `node`, wait until its head is `head` with `state_root`; seconds."""
    started = time.monotonic()
    processes.start_node(node)
    try:
        return asyncio.run(_wait_in_sync(processes, node, head, state_root, started, started + timeout_s))
    finally:
        processes.stop_node(node)


async def _wait_in_sync(processes: ClusterProcesses, node: int, head: int, state_root: str, started: float,
                        deadline: float) -> dict[str, Any]:
    startup = restored = None
    next_report = started + PROGRESS_S
    async with GridClient(f"http://127.0.0.1:{processes.layout.rpc_port(node)}") as client:
        while time.monotonic() < deadline:
            if processes.processes[node].poll() is not None:
                raise RuntimeError(f"node{node} exited; see {processes.layout.node_dir(node) / 'node.log'}")
            try:
                status = await client.status()
            except NodeUnavailable:
                await asyncio.sleep(POLL_S)
                continue
            if startup is None:
                startup = time.monotonic() - started
            if time.monotonic() >= next_report:
                next_report += PROGRESS_S
                print(f"  node{node}: height {status['height']} after {time.monotonic() - started:.0f} s",
                      file=sys.stderr)
            if restored is None and status["baseHeight"] > 0:
                restored = time.monotonic() - started
            if status["height"] >= head:
                block = await client.block(head)
                assert block is not None and block["stateRoot"] == state_root, (block, state_root)
                seconds = time.monotonic() - started
                synced_from = restored if restored is not None else startup
                base = status["baseHeight"]
                return {"seconds": round(seconds, 1), "startup_s": round(startup, 1),
                        "restored_s": None if restored is None else round(restored, 1), "base_height": base,
                        "blocks_replayed": head - base,
                        "replay_blocks_per_s": round((head - base) / max(seconds - synced_from, 1e-3), 1)}
            await asyncio.sleep(POLL_S)
    raise TimeoutError(f"node{node} not in sync after {deadline - started:.0f} s")


def run(accounts: int, blocks: int, block_txs: int, snapshot_height: int, timeout_s: float) -> dict[str, Any]:
    senders = [KeyPair.from_seed(i.to_bytes(32, "big")) for i in range(1, SENDERS + 1)]
    with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as tmp:
        directory = Path(tmp)
        funded = [(k.public_key, 10**12) for k in senders]
        # init_cluster adds its development accounts; receivers are the rest up to `accounts`
        layout = init_cluster(directory, 3, free_base_port(), observers=2, funded=funded, accounts=0)
        print(f"building {blocks} blocks over {accounts} accounts (direct execution)...", file=sys.stderr)
        receivers = fund_receivers(directory, accounts - len(senders))
        built = build_chain(directory, senders, receivers, blocks, block_txs, snapshot_height)
        # The build takes minutes: the ports init chose may be another cluster's by now.
        layout = rebase_ports(layout, free_base_port())
        for i in range(3):
            with open(layout.node_dir(i) / "node.toml", "a") as config:
                config.write(f"[snapshot]\ninterval_blocks = {blocks - snapshot_height}\n")
        bookkeepers = ClusterProcesses(layout)
        for i in range(3):
            bookkeepers.start_node(i)
        try:
            bookkeepers.wait_healthy(timeout_s=600)
            by_snapshot = time_join(ClusterProcesses(layout, ["--sync", "snapshot"]), SNAPSHOT_OBSERVER,
                                    built["head"], built["head_state_root"], timeout_s)
            print(f"by snapshot: {by_snapshot}", file=sys.stderr)
            by_replay = time_join(ClusterProcesses(layout, ["--sync", "blocks"]), REPLAY_OBSERVER,
                                  built["head"], built["head_state_root"], timeout_s)
            print(f"by replay: {by_replay}", file=sys.stderr)
        finally:
            bookkeepers.stop_all()
    return {"accounts": accounts, "blocks": blocks, "block_txs": block_txs, "snapshot_height": snapshot_height,
            **built, "by_snapshot": by_snapshot, "by_replay": by_replay,
            "speedup": round(by_replay["seconds"] / by_snapshot["seconds"], 1), "load_average": _load()}


def rebase_ports(layout: ClusterLayout, base_port: int) -> ClusterLayout:
    """The same cluster on the ports from `base_port` (every node.toml rewritten)."""
    moved = ClusterLayout(layout.directory, layout.nodes, base_port, layout.bookkeepers)
    ports = {str(old(i)): str(new(i)) for i in range(layout.nodes)
             for old, new in ((layout.rpc_port, moved.rpc_port), (layout.p2p_port, moved.p2p_port))}
    pattern = re.compile(r"\b(" + "|".join(ports) + r")\b")
    for i in range(layout.nodes):
        config = layout.node_dir(i) / "node.toml"
        config.write_text(pattern.sub(lambda match: ports[match.group(1)], config.read_text()))
    return moved


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--block-txs", type=int, default=5, help="transfers per block")
    parser.add_argument("--snapshot-height", type=int, default=9_500,
                        help="the newest snapshot (a joiner replays the blocks above it)")
    parser.add_argument("--timeout-s", type=float, default=3_600, help="longest wait for one observer")
    args = parser.parse_args()
    if not 0 < args.snapshot_height <= args.blocks or args.accounts <= SENDERS:
        parser.error(f"need 0 < --snapshot-height <= --blocks and --accounts > {SENDERS}")
    result = run(args.accounts, args.blocks, args.block_txs, args.snapshot_height, args.timeout_s)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
