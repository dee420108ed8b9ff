"""The bookkeeper schedule walked from genesis (chain/epochwalk.py), and a node joining by
snapshot after set changes (consensus/statesync.py), in process: the chain rotates a key and
then grows 3 -> 5, every block certified by the set of its height. A joiner that knows only
the genesis set learns the set of the snapshot's height from the snapshot's walk parts; a
step the old keys sign after their removal, a skipped step or a bad proof is refused, and
so is a peer serving such a walk part."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import rlp

from chain import Block, CommitCertificate, InvalidCertificate, Vote, snapshot
from chain.certificate import commit_message, final_message, finality_signers, synchronous_group
from chain.epochs import GOVERNANCE, Epoch
from chain.epochwalk import BadWalk, ScheduleWalk, WalkStep, make_step, step_heights, walk_steps
from chain.snapshot import check_base_block
from chain.verify import verify_chain
from consensus.statesync import (
    NodesChecked,
    Offers,
    Part,
    PartRefused,
    PartRequest,
    SnapshotConfig,
    SnapshotRestored,
    StateSync,
    StateSyncAction,
    StateSyncSend,
    WalkChecked,
)
from contracts.testing import BOOKKEEPERS, Call, TestChain, address_of, events, key_of
from crypto import KeyPair
from runtime.snapshots import SnapshotFiles

DISTANCE = 4
ADMINS = ("admin", "admin2")
GENESIS_NAMES = [f"bookkeeper-{i}" for i in range(BOOKKEEPERS)]
NEW = ["new-0", "new-1", "new-2"]
HEAD = 30  # the snapshot's height: two set changes below it
CONFIG = SnapshotConfig(offer_wait_ms=100, discover_ms_max=5_000, request_timeout_ms=1_000)
PEERS = [bytes([i]) * 32 for i in range(3)]


@pytest.fixture(scope="module", autouse=True)
def small_chunks() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:  # several chunks from a small state
        patch.setattr(snapshot, "CHUNK_BYTES", 1024)
        yield


def certified(chain: TestChain, block: Block, keys: dict[bytes, KeyPair]) -> Block:
    """`block` with view 0's certificate and finality proof by the set of its height."""
    epoch = chain.chain.epoch_at(block.number)
    signers = [keys[k] for k in epoch.keys]
    chain_id = chain.genesis.chain_id
    votes = [Vote(m, signers[m].sign(commit_message(chain_id, 0, block.number, block.hash)))
             for m in synchronous_group(0, epoch.n, epoch.t)]
    finals = [Vote(m, signers[m].sign(final_message(chain_id, 0, block.number, block.hash)))
              for m in finality_signers(0, epoch.n, epoch.t)]
    return block.with_certificate(CommitCertificate(0, votes, finals))


@dataclass
class Changed:
    chain: TestChain
    keys: dict[bytes, KeyPair]  # every node key by public key
    starts: list[int]  # the first heights of the two later sets

    @property
    def genesis_set(self) -> Epoch:
        return self.chain.chain.epochs()[0]


def _block(changed: TestChain, keys: dict[bytes, KeyPair], calls: list[Call]) -> list:
    txs = [changed.transaction(call) for call in calls]
    executed, rejected = changed.chain.build(txs, timestamp_ms=changed.now_ms + 1, proposer=0, view=0)
    assert not rejected
    changed.chain.append(certified(changed, executed.block, keys))
    changed.now_ms = executed.block.header.timestamp_ms
    return list(executed.receipts)


@pytest.fixture(scope="module")
def changed() -> Iterator[Changed]:
    chain = TestChain({"registry": {"admins": [address_of(a).hex() for a in ADMINS], "admin_quorum": 2},
                       "governance": {"activation_distance": DISTANCE}}, {name: 10**6 for name in ADMINS})
    keys = {key_of(name).public_key: key_of(name) for name in (*GENESIS_NAMES, *NEW)}
    starts = []
    rotation = [key_of("bookkeeper-1").public_key, key_of("new-0").public_key]
    growth = [key_of("new-1").public_key, key_of("new-2").public_key]
    for height in range(1, HEAD + 1):
        calls: list[Call] = []
        if height == 3:  # bookkeeper-1's key is replaced: accepted at 3, in force from 7
            calls = [Call("admin", GOVERNANCE, "propose", ["replace", rotation, 1]),
                     *(Call(v, GOVERNANCE, "vote", [0]) for v in ("admin2", "bookkeeper-0", "bookkeeper-2"))]
        if height == 13:  # 3 -> 5 (t 2): accepted at 13, in force from 17
            calls = [Call("admin", GOVERNANCE, "propose", ["add", growth, 2]),
                     *(Call(v, GOVERNANCE, "vote", [1]) for v in ("admin2", "bookkeeper-0", "new-0"))]
        receipts = _block(chain, keys, calls)
        starts += [e["start"] for r in receipts for e in events(r, "Accepted")]
    assert starts == [3 + DISTANCE, 13 + DISTANCE]
    yield Changed(chain, keys, starts)
    chain.close()


def test_the_walk_from_genesis_learns_the_set_of_every_height(changed: Changed) -> None:
    chain = changed.chain.chain
    walk = ScheduleWalk(chain.genesis.chain_id, changed.genesis_set, DISTANCE)
    steps = list(walk_steps(chain, HEAD, DISTANCE))
    assert len(steps) == len(step_heights(DISTANCE, HEAD)) == 7  # heights 4, 8, ..., 28
    for raw in steps:
        walk.add(raw)
    assert walk.covers(HEAD) and walk.epochs == chain.epochs()
    for height in (1, changed.starts[0] - 1, changed.starts[0], changed.starts[1], HEAD):
        assert walk.certifiers(height) == chain.epoch_at(height)
    assert walk.certifiers(HEAD).n == 5


def test_a_step_signed_by_removed_keys_a_skip_or_a_bad_proof_is_refused(changed: Changed) -> None:
    chain = changed.chain.chain
    steps = list(walk_steps(chain, HEAD, DISTANCE))
    genesis_keys = {k: changed.keys[k] for k in changed.genesis_set.keys}

    def walked(count: int) -> ScheduleWalk:
        walk = ScheduleWalk(chain.genesis.chain_id, changed.genesis_set, DISTANCE)
        for raw in steps[:count]:
            walk.add(raw)
        return walk

    # Step 8 lies in the rotated set's heights: the genesis keys (bookkeeper-1 among them)
    # sign it soundly by their own rules; the walk knows their set no longer certifies it.
    step = rlp.decode(steps[1], WalkStep)
    forged = certified_by(changed, step, genesis_keys)
    with pytest.raises(BadWalk, match="step 8"):
        walked(1).add(forged)
    with pytest.raises(BadWalk, match="the walk is at 4"):
        walked(0).add(steps[1])  # skipping step 4
    bad_proof = rlp.encode(WalkStep(step.header, step.certificate, step.proof[:-1]))
    with pytest.raises(BadWalk):
        walked(1).add(bad_proof)
    walked(2)  # the honest steps go on


def certified_by(changed: Changed, step: WalkStep, keys: dict[bytes, KeyPair]) -> bytes:
    """`step` re-certified in view 0 by the genesis set (keys in genesis index order)."""
    signers = [keys[k] for k in changed.genesis_set.keys]
    chain_id, height, block_hash = changed.chain.genesis.chain_id, step.header.number, step.header.hash
    votes = [Vote(m, signers[m].sign(commit_message(chain_id, 0, height, block_hash))) for m in (0, 1)]
    finals = [Vote(0, signers[0].sign(final_message(chain_id, 0, height, block_hash)))]
    return rlp.encode(WalkStep(step.header, CommitCertificate(0, votes, finals), step.proof))


@pytest.fixture(scope="module")
def served(changed: Changed, tmp_path_factory: pytest.TempPathFactory) -> tuple[SnapshotFiles, int]:
    """The snapshot at HEAD as a node writes and serves it (its files read back at start)."""
    chain = changed.chain.chain
    files = SnapshotFiles(Path(tmp_path_factory.mktemp("walk-snapshots")), SnapshotConfig())
    manifest = files.write(chain.head, chain.store, walk_steps(chain, HEAD, DISTANCE))
    assert manifest.walk == 1 and manifest.chunks >= 2
    files = SnapshotFiles(files.directory, files.config)
    assert files.manifests() == [manifest]
    return files, manifest.chunks


def _restore(changed: Changed, files: SnapshotFiles, serve) -> list[StateSyncAction]:
    """A joiner knowing only the genesis set restores from three peers offering `files`;
    `serve(peer, part)` gives each answer."""
    chain = changed.chain.chain
    sync = StateSync(chain_id=chain.genesis.chain_id, genesis_set=changed.genesis_set,
                     activation_distance=DISTANCE, config=CONFIG, now_ms=0)
    log: list[StateSyncAction] = []
    for peer in PEERS:
        sync.peer_up(peer, 0)
        log += sync.on_message(peer, Offers(tuple(files.manifests())), 0)
    pending = sync.on_tick(CONFIG.offer_wait_ms)
    for _ in range(100):
        log += pending
        if sync.finished:
            return log
        (peer, request), = [(a.peer, a.message) for a in pending
                            if isinstance(a, StateSyncSend) and isinstance(a.message, PartRequest)]
        pending = sync.on_message(peer, Part(request.height, request.part, serve(peer, request.part)), 0)
    raise AssertionError("state sync did not finish")


def test_a_joiner_restores_a_snapshot_taken_after_two_set_changes(changed: Changed,
                                                                   served: tuple[SnapshotFiles, int]) -> None:
    files, chunks = served
    head = changed.chain.chain.head
    # What the joiner checked before the walk: the genesis set, which no longer certifies it.
    with pytest.raises(InvalidCertificate):
        check_base_block(head, chain_id=changed.chain.genesis.chain_id, bookkeepers=list(changed.genesis_set.keys),
                         t=changed.genesis_set.t)
    asked: list[int] = []

    def serve(peer: bytes, part: int) -> bytes:
        asked.append(part)
        data = files.part(HEAD, part)
        assert data is not None
        return data

    log = _restore(changed, files, serve)
    assert asked[0] == chunks + 1 and asked[1] == 0  # the walk first, then the block it proves
    (restored,) = [a for a in log if isinstance(a, SnapshotRestored)]
    assert restored.block.hash == head.hash
    walked = {h for a in log if isinstance(a, WalkChecked) for h in a.steps}
    assert walked == set(step_heights(DISTANCE, HEAD))
    assert sum(len(a.nodes) for a in log if isinstance(a, NodesChecked)) > 0


def test_a_peer_serving_a_forged_walk_is_refused(changed: Changed, served: tuple[SnapshotFiles, int]) -> None:
    files, chunks = served
    chain = changed.chain.chain
    genesis_keys = {k: changed.keys[k] for k in changed.genesis_set.keys}
    steps = list(walk_steps(chain, HEAD, DISTANCE))
    # the genesis keys' own history: every step signed by them, as if nothing had changed
    forged = rlp.encode([certified_by(changed, rlp.decode(raw, WalkStep), genesis_keys) for raw in steps])

    def serve(peer: bytes, part: int) -> bytes:
        data = files.part(HEAD, part)
        assert data is not None
        return forged if peer == PEERS[0] and part == chunks + 1 else data

    log = _restore(changed, files, serve)
    assert [(a.peer, a.reason) for a in log if isinstance(a, PartRefused)] == [(PEERS[0], "bad-walk")]
    assert any(isinstance(a, SnapshotRestored) for a in log)


def test_pruning_keeps_the_steps_of_the_blocks_it_deletes(changed: Changed) -> None:
    chain = changed.chain.chain
    expected = list(walk_steps(chain, HEAD, DISTANCE))
    assert make_step(chain, 8) == expected[1]
    base = chain.store.prune_below(20, 64, lambda h: make_step(chain, h) if h % DISTANCE == 0 else None)
    assert base == 20
    assert chain.store.walk_step(8) == expected[1] and chain.store.walk_step(9) is None
    assert list(walk_steps(chain, HEAD, DISTANCE)) == expected  # kept below the base, made above
    # `verify` proves the base block's set by the kept walk, and re-executes from there
    assert list(verify_chain(chain)) == []
