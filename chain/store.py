"""LMDB persistence of final blocks (DESIGN.md decision 3).

One environment per node, named databases:
  nodes   trie node hash -> rlp node (state, transaction and receipt tries share it)
  blocks  height (8-byte big-endian) -> rlp(Block) with its commit certificate
  hashes  block hash -> height
  txs     transaction hash -> rlp([height, index])
  meta    b"head" -> height
A block, its trie nodes, its indexes and the head pointer are written in ONE write
transaction, so a crash leaves either the whole block or none of it. The environment is
shared: consensus/ keeps its log in its own named database of the same environment.
"""

from __future__ import annotations

from pathlib import Path

import lmdb
import rlp

from chain.errors import UnknownBlock
from chain.types import Block, decode
from crypto.hashing import Hash32

DBS_MAX = 16
HEAD_KEY = b"head"


def _height_key(height: int) -> bytes:
    return height.to_bytes(8, "big")


class ChainStore:
    def __init__(self, path: Path, map_bytes: int = 8 << 30) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(path), map_size=map_bytes, max_dbs=DBS_MAX, subdir=True)
        self._nodes = self.env.open_db(b"nodes")
        self._blocks = self.env.open_db(b"blocks")
        self._hashes = self.env.open_db(b"hashes")
        self._txs = self.env.open_db(b"txs")
        self._meta = self.env.open_db(b"meta")

    def close(self) -> None:
        self.env.close()

    # reads ------------------------------------------------------------------------------
    def node(self, node_hash: bytes) -> bytes | None:
        with self.env.begin(db=self._nodes) as txn:
            return txn.get(node_hash)

    def head_height(self) -> int | None:
        with self.env.begin(db=self._meta) as txn:
            raw = txn.get(HEAD_KEY)
        return int.from_bytes(raw, "big") if raw is not None else None

    def block(self, height: int) -> Block:
        with self.env.begin(db=self._blocks) as txn:
            raw = txn.get(_height_key(height))
        if raw is None:
            raise UnknownBlock(f"no block at height {height}")
        return decode(raw, Block)

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

    # the one write ----------------------------------------------------------------------
    def append(self, block: Block, nodes: dict[bytes, bytes]) -> None:
        """Persist `block` as the new head with every trie node it created, atomically."""
        head = self.head_height()
        assert (head is None and block.number == 0) or block.number == (head or 0) + 1, (
            f"append of height {block.number} on head {head}"
        )
        with self.env.begin(write=True) as txn:
            for node_hash, node in nodes.items():
                txn.put(node_hash, node, db=self._nodes)
            txn.put(_height_key(block.number), rlp.encode(block), db=self._blocks)
            txn.put(block.hash, _height_key(block.number), db=self._hashes)
            for index, tx in enumerate(block.transactions):
                txn.put(tx.hash, rlp.encode([block.number, index]), db=self._txs)
            txn.put(HEAD_KEY, _height_key(block.number), db=self._meta)
