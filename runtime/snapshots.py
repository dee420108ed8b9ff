"""A node's snapshots on disk: made every `[snapshot] interval_blocks` on a worker thread,
kept (the newest `kept`, and the one at the store's base), served part by part to joining
nodes (consensus/statesync.py describes the protocol, chain/snapshot.py the format), each
peer held to `serve_bytes_*` bytes a second (runtime/ratelimit.py, as the relay's budgets).

    DATA_DIR/snapshots/<height>/part-0.rlp      the certified block (part 0)
                                part-<i>.rlp    chunk i of the state (parts 1..chunks), then
                                                the schedule walk (chunks+1..chunks+walk)
                                manifest.rlp    SnapshotManifest
A snapshot is written under <height>.partial/ and renamed once complete, so a crash leaves
at most an unfinished directory, which the next start removes.

The walk reads the store on the worker thread, holding `ChainStore.reading()` per node (the
map is not remapped under a read); trie nodes never change, so the loop goes on appending
blocks meanwhile. Only the loop touches the list of snapshots: the worker hands a finished
manifest over through a queue (`collect`).
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import rlp

from chain import Block, ChainStore, DecodeError, LedgerError, decode
from chain.snapshot import SNAPSHOT_FORMAT, SnapshotManifest, encode_chunk, snapshot_chunks, walk_parts
from chain.state import NodeSource
from consensus.statesync import SnapshotConfig
from runtime.ratelimit import TokenBucket

log = logging.getLogger("gridchain.snapshots")
MANIFEST = "manifest.rlp"
PARTIAL = ".partial"


class _ReadingSource:
    """The store's trie nodes, read from another thread than the loop's."""

    def __init__(self, store: ChainStore, stop: threading.Event) -> None:
        self._store = store
        self._stop = stop

    def node(self, node_hash: bytes) -> bytes | None:
        if self._stop.is_set():
            raise _Stopped
        with self._store.reading():
            return self._store.node(node_hash)


class _Stopped(Exception):
    """The node stops: the snapshot being made is dropped."""


class SnapshotFiles:
    def __init__(self, directory: Path, config: SnapshotConfig) -> None:
        self.directory = directory
        self.config = config
        directory.mkdir(parents=True, exist_ok=True)
        self._manifests: dict[int, SnapshotManifest] = {}
        for entry in sorted(directory.iterdir()):
            if entry.name.endswith(PARTIAL):
                shutil.rmtree(entry)  # unfinished when the node stopped
            elif entry.name.isdigit():
                self._load(entry)
        self._finished: queue.SimpleQueue[SnapshotManifest] = queue.SimpleQueue()
        self._budgets: dict[bytes, TokenBucket] = {}  # per connected peer (dropped when it leaves)
        self.over_rate = 0  # part requests dropped over a peer's budget
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    def _load(self, entry: Path) -> None:
        try:
            manifest = decode((entry / MANIFEST).read_bytes(), SnapshotManifest)
        except (OSError, DecodeError) as exc:
            log.warning("snapshot %s unreadable, removed: %s", entry, exc)
            shutil.rmtree(entry)
            return
        self._manifests[manifest.height] = manifest

    # reads (the loop) ---------------------------------------------------------------------
    def manifests(self) -> list[SnapshotManifest]:
        """Complete snapshots, newest first."""
        return [self._manifests[h] for h in sorted(self._manifests, reverse=True)]

    def part(self, height: int, part: int) -> bytes | None:
        """Part `part` of the snapshot at `height` (0: its block), or None if not held."""
        manifest = self._manifests.get(height)
        if manifest is None or not 0 <= part <= manifest.chunks + manifest.walk:
            return None
        try:
            return (self.directory / str(height) / f"part-{part}.rlp").read_bytes()
        except OSError:
            return None

    def answer(self, peer: bytes, height: int, part: int, now_ms: int) -> bytes | None:
        """What to answer `peer`'s request: the part, b"" when it is not held, or None when
        the peer is past its `serve_bytes_*` budget (counted in `over_rate`: dropped)."""
        budget = self._budgets.get(peer)
        if budget is None:
            budget = self._budgets[peer] = TokenBucket(self.config.serve_bytes_per_s_max,
                                                       self.config.serve_bytes_burst_max, now_ms)
        if budget.available(now_ms) == 0:  # spent: not even the disk is read for it
            self.over_rate += 1
            return None
        data = self.part(height, part) or b""
        if not budget.take(len(data), now_ms):
            self.over_rate += 1
            return None
        return data

    def peer_down(self, peer: bytes) -> None:
        self._budgets.pop(peer, None)

    def newest_at_or_below(self, height: int) -> int | None:
        return max((h for h in self._manifests if h <= height), default=None)

    # making -------------------------------------------------------------------------------
    def due(self, height: int) -> bool:
        interval = self.config.interval_blocks
        return interval > 0 and height > 0 and height % interval == 0

    def make(self, block: Block, store: ChainStore, walk: Callable[[], Iterable[bytes]]) -> bool:
        """Start making the snapshot of final `block`'s state on the worker, with the
        schedule steps `walk` gives there (read from the store on the worker); False when the
        previous one is still being made (this height is skipped)."""
        if self._worker is not None and self._worker.is_alive():
            log.warning("snapshot at height %d skipped: the one before is still being made", block.number)
            return False
        self._worker = threading.Thread(target=self._make, args=(block, store, walk), name="snapshot", daemon=True)
        self._worker.start()
        return True

    def _make(self, block: Block, store: ChainStore, walk: Callable[[], Iterable[bytes]]) -> None:
        started = time.monotonic()
        try:
            manifest = self.write(block, _ReadingSource(store, self._stop), walk())
        except _Stopped:
            return
        except (OSError, LedgerError) as exc:
            log.error("snapshot at height %d failed: %s", block.number, exc)
            return
        log.info("snapshot at height %d: %d chunks, %d trie nodes, %d bytes, in %.1f s", block.number,
                 manifest.chunks, manifest.nodes, manifest.bytes, time.monotonic() - started)
        self._finished.put(manifest)

    def write(self, block: Block, source: NodeSource, walk: Iterable[bytes]) -> SnapshotManifest:
        """Write the snapshot of final `block`'s state, read from `source`, and the encoded
        schedule steps `walk` (chain/epochwalk.py `step_heights` below the block), in the
        calling thread (the worker's, or a benchmark's); its manifest. `collect` takes it in only
        when the worker wrote it. Nothing stays of a snapshot that fails."""
        partial = self.directory / f"{block.number}{PARTIAL}"
        try:
            partial.mkdir()
            (partial / "part-0.rlp").write_bytes(block.encoded())
            chunks = nodes = size = 0
            root = block.header.state_root
            for chunks, chunk in enumerate(snapshot_chunks(source, root), start=1):
                (partial / f"part-{chunks}.rlp").write_bytes(encode_chunk(chunk))
                nodes += len(chunk)
                size += sum(map(len, chunk))
            parts = walk_parts(list(walk))
            for i, part in enumerate(parts, start=chunks + 1):
                (partial / f"part-{i}.rlp").write_bytes(part)
            manifest = SnapshotManifest(SNAPSHOT_FORMAT, block.number, block.hash, root, chunks, nodes, size,
                                        len(parts))
            (partial / MANIFEST).write_bytes(rlp.encode(manifest))
            partial.rename(self.directory / str(block.number))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return manifest

    def collect(self, base_height: int, prune_to: int | None = None) -> list[SnapshotManifest]:
        """Take in the snapshots the worker finished; remove the ones beyond `kept`, but
        never the one at `base_height` (the store's base state is served as long as it is
        the base) nor the newest at or below `prune_to` (head - keep_blocks: the next base,
        which pruning moves to right after; without this a snapshot reaching that depth
        had always been removed by then: with interval 4, kept 2 and keep_blocks 8, the
        snapshot at h goes when h + 8 arrives, just as h becomes old enough). The new ones."""
        new: list[SnapshotManifest] = []
        while not self._finished.empty():
            manifest = self._finished.get()
            self._manifests[manifest.height] = manifest
            new.append(manifest)
        if new:
            protected = {base_height}
            if prune_to is not None:
                protected.add(self.newest_at_or_below(prune_to) or 0)
            for height in sorted(self._manifests, reverse=True)[self.config.kept:]:
                if height not in protected:
                    del self._manifests[height]
                    shutil.rmtree(self.directory / str(height), ignore_errors=True)
        return new

    def close(self) -> None:
        """Stop a snapshot being made (it is dropped) before the store closes."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
