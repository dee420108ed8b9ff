"""State sync's core (consensus/statesync.py) against scripted peers, on virtual time: it
restores from the newest offer, asks the holders in turn, refuses and never asks again a
peer serving a bad part (bad chunk, a block that is not final, not the offered one),
moves on from a silent peer, and gives up for block sync when nothing usable is offered."""

from __future__ import annotations

from pathlib import Path

import pytest
import rlp

from chain import Block, snapshot
from chain.epochs import Epoch
from chain.snapshot import SNAPSHOT_FORMAT, SnapshotManifest, encode_chunk, snapshot_chunks
from consensus import InvalidMessage
from consensus.statesync import (
    NodesChecked,
    Offers,
    OffersRequest,
    Part,
    PartRefused,
    PartRequest,
    SnapshotAbandoned,
    SnapshotConfig,
    SnapshotRestored,
    StateSync,
    StateSyncAction,
    StateSyncSend,
    statesync_message_from_wire,
)
from contracts.addresses import TOKEN
from tests.support import DevChain, certify

CONFIG = SnapshotConfig(offer_wait_ms=100, discover_ms_max=5_000, request_timeout_ms=1_000)
PEERS = [bytes([i]) * 32 for i in range(3)]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "CHUNK_BYTES", 2048)


class Served:
    """The parts of one snapshot as an honest node serves them."""

    def __init__(self, dev: DevChain) -> None:
        head = dev.chain.head
        root = head.header.state_root
        self.genesis = dev.chain.genesis
        self.block = head
        self.parts = [head.encoded(), *(encode_chunk(c) for c in snapshot_chunks(dev.chain.store, root))]
        self.manifest = SnapshotManifest(SNAPSHOT_FORMAT, head.number, head.hash, root, len(self.parts) - 1, 0, 0,
                                         0)  # no walk: the snapshot lies within activation_distance


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    dev = DevChain.create(Path(tmp_path_factory.mktemp("statesync")), accounts=100)
    for height in range(3):
        tx = dev.tx(dev.accounts[height], TOKEN, "transfer", [dev.accounts[-1].address, 1])
        executed, _ = dev.chain.build([tx], timestamp_ms=dev.clock_ms + height + 1, proposer=0, view=0)
        dev.chain.append(certify(dev, executed.block))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(snapshot, "CHUNK_BYTES", 2048)
        result = Served(dev)
    assert len(result.parts) >= 5
    return result


def _sync(served: Served) -> StateSync:
    genesis = served.genesis
    return StateSync(chain_id=genesis.chain_id, genesis_set=Epoch(1, tuple(genesis.bookkeeper_keys), genesis.t),
                     activation_distance=10, config=CONFIG, now_ms=0)


def _requests(actions: list[StateSyncAction]) -> list[tuple[bytes, PartRequest]]:
    return [(a.peer, a.message) for a in actions
            if isinstance(a, StateSyncSend) and isinstance(a.message, PartRequest)]


def _run(sync: StateSync, served: Served, serve, now: int = 0) -> tuple[list[StateSyncAction], int]:
    """Discover with every peer offering `served`, then answer each part request with
    `serve(peer, part)` (None: stay silent) until the sync finishes."""
    log: list[StateSyncAction] = []
    for peer in PEERS:
        assert [a.message for a in sync.peer_up(peer, now)] == [OffersRequest()]  # type: ignore[union-attr]
        log += sync.on_message(peer, Offers((served.manifest,)), now)
    now += CONFIG.offer_wait_ms
    pending = sync.on_tick(now)
    for _ in range(200):
        log += pending
        if sync.finished:
            return log, now
        requests = _requests(pending)
        if not requests:
            now += CONFIG.request_timeout_ms
            pending = sync.on_tick(now)
            continue
        (peer, request), = requests
        data = serve(peer, request.part)
        if data is None:
            pending = []
            continue
        pending = sync.on_message(peer, Part(request.height, request.part, data), now)
    raise AssertionError("state sync did not finish")


def test_restores_from_holders_in_turn(served: Served) -> None:
    sync = _sync(served)
    asked: list[bytes] = []

    def serve(peer: bytes, part: int) -> bytes:
        asked.append(peer)
        return served.parts[part]

    log, _ = _run(sync, served, serve)
    restored = [a for a in log if isinstance(a, SnapshotRestored)]
    assert restored and restored[0].block.hash == served.block.hash
    stored = [n for a in log if isinstance(a, NodesChecked) for n in a.nodes]
    assert len(stored) == sum(len(rlp.decode(p)) for p in served.parts[1:])
    assert set(asked) == set(PEERS) and len(asked) == len(served.parts)


def test_a_peer_serving_a_bad_chunk_is_refused_and_never_asked_again(served: Served) -> None:
    sync = _sync(served)
    asked: list[tuple[bytes, int]] = []

    def serve(peer: bytes, part: int) -> bytes:
        asked.append((peer, part))
        data = served.parts[part]
        if peer == PEERS[1] and part > 0:
            return data[:-3] + bytes([data[-3] ^ 1]) + data[-2:]
        return data

    log, _ = _run(sync, served, serve)
    refused = [a for a in log if isinstance(a, PartRefused)]
    assert [(a.peer, a.reason) for a in refused] == [(PEERS[1], "wrong-node")]
    after = asked[asked.index((refused[0].peer, refused[0].part)) + 1:]
    assert PEERS[1] not in {peer for peer, _ in after}
    assert any(isinstance(a, SnapshotRestored) for a in log)


@pytest.mark.parametrize("fault", ["not-final", "not-offered", "undecodable"])
def test_a_bad_block_part_is_refused(served: Served, fault: str) -> None:
    block = served.block
    bad = {
        "not-final": certify_without_finality(served),
        "not-offered": Block(block.header.copy(timestamp_ms=1), block.transactions, block.certificate).encoded(),
        "undecodable": b"\x01\x02",
    }[fault]
    sync = _sync(served)

    def serve(peer: bytes, part: int) -> bytes:
        return bad if peer == PEERS[0] and part == 0 else served.parts[part]

    log, _ = _run(sync, served, serve)
    assert [(a.peer, a.reason) for a in log if isinstance(a, PartRefused)] == [(PEERS[0], fault)]
    assert any(isinstance(a, SnapshotRestored) for a in log)


def certify_without_finality(served: Served) -> bytes:
    certificate = served.block.certificate[0]
    return served.block.with_certificate(certificate.copy(finality=[])).encoded()


def test_a_silent_peer_is_passed_over(served: Served) -> None:
    sync = _sync(served)

    def serve(peer: bytes, part: int) -> bytes | None:
        return None if peer == PEERS[2] else served.parts[part]

    log, _ = _run(sync, served, serve)
    assert any(isinstance(a, SnapshotRestored) for a in log)
    assert not [a for a in log if isinstance(a, PartRefused)]


def test_nothing_offered_means_block_sync(served: Served) -> None:
    sync = _sync(served)
    for peer in PEERS:
        sync.peer_up(peer, 0)
        sync.on_message(peer, Offers(()), 0)
    assert sync.on_tick(CONFIG.discover_ms_max - 1) == []
    (abandoned,) = sync.on_tick(CONFIG.discover_ms_max)
    assert isinstance(abandoned, SnapshotAbandoned) and sync.finished and sync.next_deadline() is None


def test_every_holder_bad_means_block_sync(served: Served) -> None:
    sync = _sync(served)
    log, _ = _run(sync, served, lambda peer, part: b"\xc0" if part == 1 else served.parts[part])
    assert sorted(a.peer for a in log if isinstance(a, PartRefused)) == sorted(PEERS)
    assert isinstance(log[-1], SnapshotAbandoned)


def test_wire_round_trip_and_strict_decoding(served: Served) -> None:
    for message in (OffersRequest(), Offers((served.manifest,)), PartRequest(3, 1), Part(3, 1, b"ab")):
        assert statesync_message_from_wire(message.to_wire()) == message
    for bad in ({"type": "snapshot_part_request", "height": -1, "part": 0},
                {"type": "snapshot_offers", "offers": [b"\x00" * 300]},
                {"type": "snapshot_offers", "offers": [b"\x01"] * 17},
                {"type": "snapshot_part", "height": 1, "part": 0},
                {"type": "snapshot_nope"}):
        with pytest.raises(InvalidMessage):
            statesync_message_from_wire(bad)
