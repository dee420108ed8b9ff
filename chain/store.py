"""LMDB persistence of final blocks (architecture decision 3).

One environment per node, named databases:
  nodes   trie node hash -> rlp node (state, transaction and receipt tries share it)
  blocks  height (8-byte big-endian) -> rlp(Block) with its commit certificate
  hashes  block hash -> height
  txs     transaction hash -> rlp([height, index])
  meta    b"head" -> height; b"base" -> the base height (absent: 0)
  walk    height -> the encoded schedule step at that height (chain/epochwalk.py), kept for
          the heights below the base: pruning writes the step of a block before it deletes
          the block, a snapshot restore writes the steps it checked
The store holds every block from its base height to its head, and the state at each of them;
trie nodes that no kept block or snapshot reaches any more are collected by mark and sweep
(chain/prune.py: `begin_collection` protects every node written while the mark runs).
The base is 0 for an archive; pruning (`prune_below`) and a snapshot restore
(`install_snapshot`) raise it. Block 0 (genesis) is always kept; the
hash and transaction indexes of pruned blocks are kept (a lookup finds a block that is gone,
and answers BlockPruned, not "unknown").
A block, its trie nodes, its indexes and the head pointer are written in ONE write
transaction, so a crash leaves either the whole block or none of it. The environment is
shared: consensus/ keeps its log in its own named database of the same environment, and a
finalizing replica's record goes into the block's own transaction (`append(also=...)`).

Space: the map starts at `map_bytes` and, when a write finds it full, doubles (up to
`map_bytes_max`) as long as the disk keeps `disk_free_bytes_min` free; otherwise the write
raises StorageFull, having written nothing. `storage_error` turns what LMDB raises when
the disk itself is full into the same error, for writers of the shared environment.
Growing remaps the file: reads on other threads hold `reading()` so none is in flight.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lmdb
import rlp

from chain.errors import BlockPruned, StorageFull, UnknownBlock
from chain.types import Block, decode
from crypto import Hash32

DBS_MAX = 16
HEAD_KEY = b"head"
BASE_KEY = b"base"
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class StorageUsage:
    map_bytes: int
    used_bytes: int
    disk_free_bytes: int


def _height_key(height: int) -> bytes:
    return height.to_bytes(8, "big")


class ChainStore:
    def __init__(self, path: Path, map_bytes: int = 8 << 30, map_bytes_max: int = 64 << 30,
                 disk_free_bytes_min: int = 64 << 20) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.map_bytes_max = max(map_bytes, map_bytes_max)
        self.disk_free_bytes_min = disk_free_bytes_min
        self._remap = threading.Lock()
        self.env = lmdb.open(str(path), map_size=map_bytes, max_dbs=DBS_MAX, subdir=True)
        self._nodes = self.env.open_db(b"nodes")
        self._blocks = self.env.open_db(b"blocks")
        self._hashes = self.env.open_db(b"hashes")
        self._txs = self.env.open_db(b"txs")
        self._meta = self.env.open_db(b"meta")
        self._walk = self.env.open_db(b"walk")
        # While a collection runs (chain/prune.py), every node written: the mark started from
        # the roots of that moment, so these may be reachable without being marked.
        self._written_during_collection: set[bytes] | None = None

    def close(self) -> None:
        self.env.close()

    # space ------------------------------------------------------------------------------
    def usage(self) -> StorageUsage:
        info, page_bytes = self.env.info(), self.env.stat()["psize"]
        return StorageUsage(info["map_size"], (info["last_pgno"] + 1) * page_bytes, self.disk_free_bytes())

    def disk_free_bytes(self) -> int:
        return shutil.disk_usage(self.path).free

    def grow(self) -> bool:
        """Double the map (up to map_bytes_max) if the disk can hold the growth and still
        keep disk_free_bytes_min free; whether it grew."""
        usage = self.usage()
        target = min(2 * usage.map_bytes, self.map_bytes_max)
        file_bytes = os.path.getsize(self.path / "data.mdb")
        if target <= usage.map_bytes or target - file_bytes > usage.disk_free_bytes - self.disk_free_bytes_min:
            return False
        with self._remap:
            self.env.set_mapsize(target)
        return True

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold while reading on a thread other than the writer's: the map is not remapped
        under it."""
        with self._remap:
            yield

    def storage_error(self, exc: BaseException) -> StorageFull | None:
        """The StorageFull that `exc`, raised by a write to this environment, means, if any."""
        usage = self.usage()
        if isinstance(exc, StorageFull):
            return exc
        if isinstance(exc, lmdb.MapFullError):
            detail = (f"LMDB map full and cannot grow: lmdb_map_bytes_max {self.map_bytes_max >> 20} MiB, "
                      f"disk_free_bytes_min {self.disk_free_bytes_min >> 20} MiB")
            return StorageFull("map-full", detail, usage.map_bytes, usage.used_bytes, usage.disk_free_bytes)
        disk_full = (isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS) or (
            isinstance(exc, lmdb.Error) and any(os.strerror(code) in str(exc) for code in DISK_FULL_ERRNOS))
        if disk_full:
            return StorageFull("disk-full", str(exc), usage.map_bytes, usage.used_bytes, usage.disk_free_bytes)
        return None

    # reads ------------------------------------------------------------------------------
    def node(self, node_hash: bytes) -> bytes | None:
        with self.env.begin(db=self._nodes) as txn:
            return txn.get(node_hash)

    def head_height(self) -> int | None:
        with self.env.begin(db=self._meta) as txn:
            raw = txn.get(HEAD_KEY)
        return int.from_bytes(raw, "big") if raw is not None else None

    def base_height(self) -> int:
        """The lowest height above genesis whose block and state are held (0: all are)."""
        with self.env.begin(db=self._meta) as txn:
            raw = txn.get(BASE_KEY)
        return int.from_bytes(raw, "big") if raw is not None else 0

    def block(self, height: int) -> Block:
        with self.env.begin(db=self._blocks) as txn:
            raw = txn.get(_height_key(height))
        if raw is None:
            self.check_held(height)
            raise UnknownBlock(f"no block at height {height}")
        return decode(raw, Block)

    def check_held(self, height: int) -> None:
        """BlockPruned if `height` is below the base now. A read that found block `height`
        and then misses one of its trie nodes asks this: pruning raised the base past it
        meanwhile and the collection swept its state (chain/prune.py deletes only what no
        root from the base up reaches, so a held block's nodes never go missing)."""
        base = self.base_height()
        if 0 < height < base:
            raise BlockPruned(height, base)

    def raw_block(self, height: int) -> bytes | None:
        with self.env.begin(db=self._blocks) as txn:
            return txn.get(_height_key(height))

    def height_of(self, block_hash: Hash32) -> int:
        with self.env.begin(db=self._hashes) as txn:
            raw = txn.get(block_hash)
        if raw is None:
            raise UnknownBlock(f"no block with hash 0x{block_hash.hex()}")
        return int.from_bytes(raw, "big")

    def transaction_location(self, tx_hash: Hash32) -> tuple[int, int]:
        with self.env.begin(db=self._txs) as txn:
            raw = txn.get(tx_hash)
        if raw is None:
            raise UnknownBlock(f"no final transaction 0x{tx_hash.hex()}")
        height, index = rlp.decode(raw)
        return int.from_bytes(height, "big"), int.from_bytes(index, "big")

    def has_transaction(self, tx_hash: Hash32) -> bool:
        with self.env.begin(db=self._txs) as txn:
            return txn.get(tx_hash) is not None

    def walk_step(self, height: int) -> bytes | None:
        """The schedule step kept for `height` (chain/epochwalk.py), if any."""
        with self.env.begin(db=self._walk) as txn:
            return txn.get(_height_key(height))

    def node_hashes_after(self, after: bytes, count_max: int) -> list[bytes]:
        """Up to `count_max` stored node hashes in key order, past `after` (b"": the first)."""
        found: list[bytes] = []
        with self.env.begin(db=self._nodes) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(after):
                return found
            for key in cursor.iternext(keys=True, values=False):
                if key == after:
                    continue
                found.append(bytes(key))
                if len(found) >= count_max:
                    break
        return found

    # collection (chain/prune.py) ---------------------------------------------------------
    def begin_collection(self) -> None:
        assert self._written_during_collection is None, "one collection at a time"
        self._written_during_collection = set()

    def written_during_collection(self) -> set[bytes]:
        assert self._written_during_collection is not None
        return self._written_during_collection

    def end_collection(self) -> None:
        self._written_during_collection = None

    def delete_nodes(self, hashes: list[bytes]) -> None:
        """Delete trie nodes no kept root reaches (the sweep), in one write."""
        def write(txn: lmdb.Transaction) -> None:
            for node_hash in hashes:
                txn.delete(node_hash, db=self._nodes)

        self._retrying(lambda: self._in_write(write))

    # writes: each one transaction ----------------------------------------------------------
    def append(self, block: Block, nodes: dict[bytes, bytes],
               also: Callable[[lmdb.Transaction], None] | None = None) -> None:
        """Persist `block` as the new head with every trie node it created, atomically;
        `also` writes what must commit with it in the same transaction: the consensus
        record of the replica that finalized it, the mempool journal's entries of its
        transactions (each would cost a durable write of its own on the critical path)."""
        head = self.head_height()
        assert (head is None and block.number == 0) or block.number == (head or 0) + 1, (
            f"append of height {block.number} on head {head}"
        )
        self._retrying(lambda: self._write_block(block, nodes, also))

    def put_nodes(self, nodes: dict[bytes, bytes]) -> None:
        """Store checked trie nodes (a snapshot chunk). Content-addressed: whatever happens
        next, a stored node is never wrong."""
        self._retrying(lambda: self._in_write(lambda txn: self._put_nodes(txn, nodes)))

    def install_snapshot(self, block: Block) -> None:
        """Make the certified `block`, whose state's every node `put_nodes` stored, the head
        and base of a store that held genesis only. Its transactions are not indexed: this
        node has neither their receipts nor the state before them."""
        assert self.head_height() == 0, "a snapshot is installed on a fresh store only"
        assert block.number > 0 and block.certificate, "a certified block above genesis"

        def write(txn: lmdb.Transaction) -> None:
            self._put_block(txn, block, {}, indexed=False)
            txn.put(BASE_KEY, _height_key(block.number), db=self._meta)

        self._retrying(lambda: self._in_write(write))

    def put_walk_steps(self, steps: dict[int, bytes]) -> None:
        """Keep checked schedule steps (a snapshot restore's), by height."""
        def write(txn: lmdb.Transaction) -> None:
            for number, step in steps.items():
                txn.put(_height_key(number), step, db=self._walk)

        self._retrying(lambda: self._in_write(write))

    def prune_below(self, height: int, blocks_max: int,
                    walk_step: Callable[[int], bytes | None] = lambda _: None) -> int:
        """Delete the bodies of blocks from the base up to `height` - 1, at most `blocks_max`
        of them in this one write (a long write would stall the loop), and raise the base
        past them; the new base. Their indexes stay, and so does `walk_step(number)` of each
        (made before the write, while the block and its state are still here). The head is
        never pruned."""
        base = max(self.base_height(), 1)
        end = min(height, base + blocks_max, self.head_height() or 0)
        if end <= base:
            return self.base_height()
        steps = {number: step for number in range(base, end) if (step := walk_step(number)) is not None}

        def write(txn: lmdb.Transaction) -> None:
            for number in range(base, end):
                txn.delete(_height_key(number), db=self._blocks)
            for number, step in steps.items():
                txn.put(_height_key(number), step, db=self._walk)
            txn.put(BASE_KEY, _height_key(end), db=self._meta)

        self._retrying(lambda: self._in_write(write))
        return end

    def _retrying(self, write: Callable[[], None]) -> None:
        """Run `write`; on a full map grow it and run it again (see the module docstring)."""
        while True:
            try:
                write()
                return
            except (lmdb.Error, OSError) as exc:
                full = self.storage_error(exc)
                if full is None:
                    raise
                if full.reason != "map-full" or not self.grow():
                    raise full from exc

    def _write_block(self, block: Block, nodes: dict[bytes, bytes],
                     also: Callable[[lmdb.Transaction], None] | None) -> None:
        def write(txn: lmdb.Transaction) -> None:
            self._put_block(txn, block, nodes, indexed=True)
            if also is not None:
                also(txn)

        self._in_write(write)

    def _in_write(self, work: Callable[[lmdb.Transaction], None]) -> None:
        with self.env.begin(write=True) as txn:
            work(txn)

    def _put_nodes(self, txn: lmdb.Transaction, nodes: dict[bytes, bytes]) -> None:
        for node_hash, node in nodes.items():
            txn.put(node_hash, node, db=self._nodes)
        if self._written_during_collection is not None:
            self._written_during_collection.update(nodes)

    def _put_block(self, txn: lmdb.Transaction, block: Block, nodes: dict[bytes, bytes], *, indexed: bool) -> None:
        self._put_nodes(txn, nodes)
        txn.put(_height_key(block.number), block.encoded(), db=self._blocks)
        txn.put(block.hash, _height_key(block.number), db=self._hashes)
        if indexed:
            for index, tx in enumerate(block.transactions):
                txn.put(tx.hash, rlp.encode([block.number, index]), db=self._txs)
        txn.put(HEAD_KEY, _height_key(block.number), db=self._meta)
