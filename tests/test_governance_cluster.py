"""Bookkeeper set changes on real node processes (issue 16): 3 -> 5 -> 3 under load, a key
rotation, a proposal without a majority that changes nothing, and finality proofs of a
removed (or rotated-out) bookkeeper refused after its removal height."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from chain import ChainStore, CommitCertificate, InvalidCertificate, Transaction, TxReason, Vote
from chain.certificate import commit_message, final_message, synchronous_group, verify_finality
from chain.chain import Chain
from chain.epochs import GOVERNANCE
from chain.genesis import Genesis
from client import GridClient, NodeUnavailable, RpcCallError
from client.contracts import Governance
from consensus import BadBlock, BlockSync, SyncRejected, SyncSend
from consensus.sync import SyncRequest, SyncResponse, SyncStatus
from contracts import build_contracts
from contracts.governance import EPOCHS_KEY
from crypto import KeyPair
from crypto.keystore import load_key
from diagnosis.lightclient import LightClient, TrustAnchor
from runtime.cluster import ROOT, ClusterProcesses, cluster_passphrase
from runtime.cluster import node_key as cluster_node_key
from tests.cluster_support import rpc_urls, running_cluster
from vm import Engine

pytestmark = pytest.mark.timeout(600)
DISTANCE = 4  # activation_distance: blocks from acceptance to the new set
CONTRACTS = {"governance": {"activation_distance": DISTANCE}}
WAIT_S = 120  # generous: two shared cores under other agents' load
PUSHBACK = (TxReason.NONCE_GAP, TxReason.MEMPOOL_FULL, TxReason.SENDER_FULL, TxReason.NODE_BUSY)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def node_key(processes: ClusterProcesses, i: int) -> KeyPair:
    return cluster_node_key(processes.layout, i)


def admin_key(processes: ClusterProcesses, j: int) -> KeyPair:
    directory = processes.layout.directory
    return load_key(directory / "admins" / f"admin{j}.key", cluster_passphrase(directory))


class Load:
    """Transfers sent to `clients` in turn until stopped (bounded in count), each waited
    for: none may be lost across the set changes."""

    def __init__(self, clients: list[GridClient], accounts: list[KeyPair], count_max: int = 2_000) -> None:
        self.clients, self.accounts, self.count_max = clients, accounts, count_max
        self.sent: list[tuple[GridClient, str]] = []
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        recipient = self.accounts[-1].address
        while not self._stop.is_set() and len(self.sent) < self.count_max:
            for i, sender in enumerate(self.accounts[:-1]):
                client = self.clients[(len(self.sent) + i) % len(self.clients)]
                tx = await client.build(sender, "token", "transfer", [recipient, 1])
                await self._submit(client, tx)
                self.sent.append((client, "0x" + tx.hash.hex()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.2)

    async def _submit(self, client: GridClient, tx: Transaction) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                await client.submit(tx)
                return
            except RpcCallError as exc:
                # A retry of a submission the node took (its first answer was lost under
                # load) finds it pending or final: it was sent all the same.
                if exc.reason == TxReason.DUPLICATE:
                    return
                # The chain stalls while a view changes: the node pushes back; send later.
                if exc.reason not in PUSHBACK or time.monotonic() > deadline:
                    raise
            except NodeUnavailable:  # a loaded node dropped the connection: the same again
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.5)

    async def finish(self) -> int:
        """Stop, then wait for every transfer's receipt; how many there were."""
        self._stop.set()
        await self._task
        for client, tx_hash in self.sent:
            receipt = await client.wait_receipt(tx_hash, timeout_s=WAIT_S)
            assert receipt.ok, receipt
        return len(self.sent)


async def until_leaving(client: GridClient, sender: KeyPair, recipient: bytes) -> list[str]:
    """Transfers to `client`'s node, one every 0.1 s, until it refuses with `leaving` (a
    bookkeeper whose key the next set drops); the hashes it accepted."""
    accepted: list[str] = []
    while True:
        tx = await client.build(sender, "token", "transfer", [recipient, 1])
        while True:
            try:
                await client.submit(tx)
                break
            except RpcCallError as exc:
                if exc.reason == TxReason.LEAVING:
                    return accepted
                if exc.reason not in PUSHBACK:
                    raise
            except NodeUnavailable:
                pass
            await asyncio.sleep(0.3)
        accepted.append("0x" + tx.hash.hex())
        await asyncio.sleep(0.1)


async def accept(client: GridClient, kind: str, keys: list[bytes], t: int, voters: list[KeyPair]) -> int:
    """Propose with the first voter, vote with the rest (signed here, sent by RPC
    governance_propose / governance_vote); the start height of the new set."""
    receipt = await Governance.submit(Governance.propose(kind, keys, t), client, voters[0], timeout_s=WAIT_S)
    proposal_id = receipt.event("Proposed")["id"]
    for voter in voters[1:]:
        receipt = await Governance.submit(Governance.vote(proposal_id), client, voter, timeout_s=WAIT_S)
    accepted = [e.fields for e in receipt.events_named("Accepted")]
    assert accepted, f"{kind} not accepted by {len(voters)} voters"
    assert accepted[0]["start"] == receipt.block_number + DISTANCE
    return int(accepted[0]["start"])


async def in_epoch(clients: list[GridClient], start: int, n: int) -> None:
    """Every client's node runs the set of `start` and has made a block in it."""
    async def check() -> bool:
        statuses = [await c.status() for c in clients]
        return all(s["epoch"] == start and len(s["bookkeepers"]) == n and s["height"] >= start for s in statuses)
    await until(check, f"every node in the set of height {start}")


def verify(data_dir: Path, genesis: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "node.py"), "verify", "--data-dir", str(data_dir),
                             "--genesis", str(genesis)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def forged_finality(chain: Chain, height: int, keys: list[KeyPair], t: int) -> CommitCertificate:
    """A certificate with its finality proof for the stored block at `height`, signed by
    view 0's group of the set `keys` (n = 2t+1): what bookkeepers of an old set can make."""
    block = chain.block(height)
    chain_id = chain.genesis.chain_id
    group = synchronous_group(0, len(keys), t)
    votes = [Vote(i, keys[i].sign(commit_message(chain_id, 0, height, block.hash))) for i in group]
    signers = group[:1] if t == 1 else group
    return CommitCertificate(0, votes, [Vote(i, keys[i].sign(final_message(chain_id, 0, height, block.hash)))
                                        for i in signers])


def refused_after_removal(directory: Path, node: int, height: int, old_keys: list[KeyPair], old_t: int) -> None:
    """A proof by the old set for a block of the new set's heights: sound by the old set's
    own rules, refused by verify_finality with the set of that height and by block sync."""
    genesis = Genesis.load(directory / "genesis.toml")
    store = ChainStore(directory / f"node{node}" / "data" / "chain")
    try:
        chain = Chain(store, genesis, Engine(build_contracts(genesis.contract_params)))
        block = chain.block(height)
        forged = forged_finality(chain, height, old_keys, old_t)
        verify_finality(forged, chain_id=genesis.chain_id, height=height, block_hash=block.hash,
                        bookkeepers=[k.public_key for k in old_keys], t=old_t)  # valid under the old set
        current = chain.epoch_at(height)
        assert set(current.keys) != {k.public_key for k in old_keys}
        with pytest.raises(InvalidCertificate):
            verify_finality(forged, chain_id=genesis.chain_id, height=height, block_hash=block.hash,
                            bookkeepers=list(current.keys), t=current.t)
        # A follower one block behind is served the forged block: refused, not final.
        follower = _FollowerAt(chain, height - 1)
        sync = BlockSync(follower, chain_id=genesis.chain_id, set_of=chain.epoch_at)
        peer = b"\x07" * 32
        assert sync.on_message(peer, SyncStatus(height, block.hash), 0) == [SyncSend(peer, SyncRequest(height, 1))]
        served = SyncResponse(height, (block.with_certificate(forged).encoded(),))
        refused = sync.on_message(peer, served, 1)
        assert any(isinstance(a, SyncRejected) and a.reason is BadBlock.NOT_FINAL for a in refused), refused
        assert follower.finalized == []
    finally:
        store.close()


class _FollowerAt:
    """The application of a node whose final head is `height` of `chain` (read-only)."""

    def __init__(self, chain: Chain, height: int) -> None:
        self.chain, self.height = chain, height
        self.finalized: list[Any] = []

    def final_height(self) -> int:
        return self.height

    def final_hash(self) -> bytes:
        return self.chain.block(self.height).hash

    def pending_transactions(self) -> int:
        return 0

    def propose(self, height: int, view: int, proposer: int, clock_ms: int) -> None:
        return None

    def check(self, block: Any) -> None:
        raise AssertionError("a block without a valid finality proof is never executed")

    def finalize(self, block: Any) -> None:
        self.finalized.append(block)

    def final_block(self, height: int) -> Any:
        return self.chain.block(height) if height <= self.height else None



async def status_of(client: GridClient) -> dict[str, Any]:
    status = await client.status()
    assert isinstance(status, dict)
    return status


async def proposed_id(receipt: dict[str, Any]) -> int:
    return int(receipt.event("Proposed")["id"])


async def same_chain(clients: list[GridClient], height: int) -> None:
    """Every client's node holds the same block at `height` (no fork)."""
    async def check() -> bool:
        heights = [(await c.status())["height"] for c in clients]
        return min(heights) >= height
    await until(check, f"height {height} everywhere")
    hashes = {(await c.block(height))["hash"] for c in clients}
    assert len(hashes) == 1, f"fork at {height}: {hashes}"


async def left(client: GridClient, start: int) -> None:
    """A node whose key is not in the set of `start`: an observer once it reached it, or
    cut off before (its links end when the others switch, so it may never reach it)."""
    status = await status_of(client)
    assert status["consensusState"] == "observer" or status["height"] < start, status


async def disconnected(client: GridClient, names: set[str]) -> None:
    async def check() -> bool:
        return not names & set((await client.status())["peers"])
    await until(check, f"{sorted(names)} disconnected")


@pytest.mark.slow
async def test_three_to_five_to_three_bookkeepers_under_load(tmp_path: Path) -> None:
    """Two observers join (3 -> 5, t 1 -> 2) after a proposal that lacked a majority did
    nothing; the deciding vote is sent with the old set's primary killed, so it lands during
    a view change, and that node restarts into the new set from the old epoch's stored
    consensus state; then a founding node and a joined one leave (5 -> 3). Transfers flow to two nodes
    in every set throughout: every one is final, the nodes agree on every block, the
    removed nodes are cut off from the rest, and every store verifies."""
    with running_cluster(tmp_path, nodes=3, observers=2, contracts=CONTRACTS,
                         health_timeout_s=WAIT_S) as (processes, accounts):
        clients = [GridClient(url) for url in rpc_urls(processes)]
        admins = [admin_key(processes, j) for j in range(2)]
        nodes = [node_key(processes, i) for i in range(5)]
        load = Load([clients[2], clients[4]], accounts[:6])
        try:
            joining = [nodes[3].public_key, nodes[4].public_key]
            receipt = await Governance.propose("add", joining, 2).transact(clients[0], admins[0], timeout_s=WAIT_S)
            proposal = await proposed_id(receipt)
            for voter in (admins[1], nodes[0]):  # the administrators, but one bookkeeper of three
                receipt = await Governance.vote(proposal).transact(clients[0], voter, timeout_s=WAIT_S)
            assert not receipt.events_named("Accepted")
            await same_chain(clients[:3], receipt.block_number + 2 * DISTANCE)
            assert len(await Governance.epochs(clients[0])) == 1
            assert (await status_of(clients[3]))["consensusState"] == "observer"
            assert [p.id for p in await Governance.proposals(clients[1])] == [proposal]

            assert (await status_of(clients[1]))["primary"] == "node0"
            # The deciding vote lands while the old set changes view: its primary is dead.
            processes.stop_node(0, signal.SIGKILL)
            receipt = await Governance.vote(proposal).transact(clients[2], nodes[1], timeout_s=WAIT_S)  # majority
            start = receipt.event("Accepted").int_of("start")
            accepting = await clients[2].block(receipt.block_number)
            assert accepting["commit"]["view"] >= 1  # view 0's group needs node0's vote
            await in_epoch(clients[1:], start, 5)
            processes.start_node(0)  # restarted with the old epoch's consensus state stored
            processes.wait_healthy(WAIT_S)
            await in_epoch(clients, start, 5)
            for client in clients[3:]:
                assert (await status_of(client))["consensusState"] != "observer"
            block = await clients[4].block(start)
            assert len(block["commit"]["votes"]) == 3  # t = 2: groups of three
            assert (await clients[0].rpc.call("governance_set", start - 1))["n"] == 3

            leaving = [nodes[1].public_key, nodes[3].public_key]
            start = await accept(clients[2], "remove", leaving, 1, [admins[0], admins[1], nodes[0], nodes[2], nodes[4]])
            remaining = [clients[0], clients[2], clients[4]]
            await in_epoch(remaining, start, 3)
            for client in (clients[1], clients[3]):
                await left(client, start)
            for client in remaining:
                await disconnected(client, {"node1", "node3"})
            sent = await load.finish()
            assert sent > 0
            head = (await status_of(clients[0]))["height"]
            await same_chain(remaining, head)
        finally:
            for client in clients:
                await client.close()
    for node in (0, 4):
        verify(processes.layout.node_dir(node) / "data", tmp_path / "genesis.toml")
    refused_after_removal(tmp_path, 0, start, nodes, 2)


async def test_key_rotation_hands_a_seat_to_a_new_key(tmp_path: Path) -> None:
    """Bookkeeper 1's key is replaced by the key of a node that followed as an observer:
    from the switch height on the new key signs in seat 1, the old key's node is an
    observer cut off from the bookkeepers, blocks keep coming, and a finality proof made
    with the old key after the switch is refused."""
    with running_cluster(tmp_path, nodes=3, observers=1, contracts=CONTRACTS,
                         health_timeout_s=WAIT_S) as (processes, accounts):
        clients = [GridClient(url) for url in rpc_urls(processes)]
        admins = [admin_key(processes, j) for j in range(2)]
        nodes = [node_key(processes, i) for i in range(4)]
        load = Load([clients[0], clients[2]], accounts[:3])  # blocks keep coming up to the switch and past it
        try:
            rotation = [nodes[1].public_key, nodes[3].public_key]
            # Transfers go to the bookkeeper that is rotated out, until it says it leaves.
            to_leaving = asyncio.ensure_future(until_leaving(clients[1], accounts[3], accounts[4].address))
            start = await accept(clients[0], "replace", rotation, 1, [nodes[1], admins[0], admins[1], nodes[2]])
            accepted_by_leaving = await asyncio.wait_for(to_leaving, WAIT_S)
            seated = [clients[0], clients[2], clients[3]]
            await in_epoch(seated, start, 3)
            status = await status_of(clients[3])
            assert status["bookkeepers"][1]["publicKey"] == "0x" + nodes[3].public_key.hex()
            await left(clients[1], start)
            await disconnected(clients[0], {"node1"})
            # Out of the set and cut off, it takes nothing it could not pass on.
            tx = await clients[1].build(accounts[3], "token", "transfer", [accounts[4].address, 1])
            with pytest.raises(RpcCallError) as refused:
                await clients[1].submit(tx)
            assert refused.value.reason == TxReason.LEAVING
            receipt = await clients[3].transact(accounts[5], "token", "transfer", [accounts[6].address, 5],
                                                timeout_s=WAIT_S)
            assert receipt.block_number > start
            await same_chain(seated, receipt.block_number)
            # A light client from genesis walks the proven schedule to a head the new key signs.
            light = LightClient(clients[3], TrustAnchor.from_genesis(tmp_path / "genesis.toml"))
            proven = await light.storage(GOVERNANCE, EPOCHS_KEY)
            assert proven.header.number >= start and isinstance(proven.value, list) and len(proven.value) == 2
            assert await load.finish() > 0
            # None of what the leaving node accepted before the switch is stranded with it.
            assert accepted_by_leaving
            for tx_hash in accepted_by_leaving:
                receipt = await clients[0].wait_receipt(tx_hash, timeout_s=WAIT_S)
                assert receipt.ok, receipt
        finally:
            for client in clients:
                await client.close()
    verify(processes.layout.node_dir(3) / "data", tmp_path / "genesis.toml")
    refused_after_removal(tmp_path, 0, start, nodes[:3], 1)
