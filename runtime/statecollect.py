"""A node's collection of old state trie nodes (chain/prune.py), run after pruning raised
the base: the mark on a worker thread (reads only, each under `ChainStore.reading()`), the
sweep on the loop in bounded deletes per status tick (`[snapshot] prune_nodes_per_write_max`),
so neither a long walk nor a long write stalls consensus, and only the loop writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from chain import ChainStore, prune
from crypto import Hash32

log = logging.getLogger("gridchain.prune")


class _Reading:
    """The store's nodes, read from the worker thread."""

    def __init__(self, store: ChainStore) -> None:
        self._store = store

    def node(self, node_hash: bytes) -> bytes | None:
        with self._store.reading():
            return self._store.node(node_hash)


class StateCollector:
    def __init__(self, store: ChainStore, per_write_max: int) -> None:
        self.store = store
        self.per_write_max = per_write_max
        self.collected_base = store.base_height()  # the base the last collection started from
        self.deleted_total = 0
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._marked: set[bytes] | None = None  # the mark's result, once done
        self._failed = False
        self._cursor = b""
        self._deleted = 0
        self._started = 0.0

    @property
    def running(self) -> bool:
        return self._worker is not None

    def start(self, head: int, snapshot_roots: list[Hash32]) -> None:
        """Begin a collection for the store's current base and `head` (on the loop)."""
        assert self._worker is None
        self.store.begin_collection()  # before the roots are taken: later writes are spared
        self.collected_base = self.store.base_height()
        self._marked, self._failed, self._cursor, self._deleted = None, False, b"", 0
        self._started = time.monotonic()
        roots: Callable[[], list[Hash32]] = lambda: self._roots(head, snapshot_roots)  # noqa: E731
        self._worker = threading.Thread(target=self._mark, args=(roots,), name="state-mark", daemon=True)
        self._worker.start()

    def _roots(self, head: int, snapshot_roots: list[Hash32]) -> list[Hash32]:
        with self.store.reading():
            return prune.kept_roots(self.store, head, snapshot_roots)

    def _mark(self, roots: Callable[[], list[Hash32]]) -> None:
        try:
            self._marked = prune.mark(_Reading(self.store), roots(), self._stop)
        except prune.Stopped:
            pass
        except Exception:  # noqa: BLE001 - a failed mark deletes nothing; the node goes on
            log.exception("marking the kept states failed; nothing is deleted")
            self._failed = True

    def step(self) -> None:
        """On the loop: once the mark is done, one bounded sweep write; at the end, stop."""
        worker = self._worker
        if worker is None or worker.is_alive():
            return
        marked = self._marked
        if marked is None:  # failed or stopped
            self._finish()
            return
        deleted, self._cursor = prune.sweep_batch(self.store, marked, self._cursor, self.per_write_max)
        self._deleted += len(deleted)
        if not self._cursor:
            log.info("old states collected below height %d: %d trie nodes deleted, %d kept, in %.1f s",
                     self.collected_base, self._deleted, len(marked), time.monotonic() - self._started)
            self.deleted_total += self._deleted
            self._finish()

    def _finish(self) -> None:
        self.store.end_collection()
        self._worker = None
        self._marked = None

    def close(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
