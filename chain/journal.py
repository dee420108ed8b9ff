"""MempoolJournal: transactions a node acknowledged to a client, kept on disk until final.

`tx_send` returning a hash is a promise: the transaction will become final unless it turns
invalid. The mempool lives in memory, so without a journal a restart of every node (a
power cut at a substation, say) would drop every acknowledged transaction silently. The
journal is a named database `mempool` in the node's LMDB environment (tx hash -> raw rlp):
a batch of admissions is written in one transaction before any of them is acknowledged,
entries leave when their block is final, and a restarted node admits them again.

An entry whose transaction is dropped without becoming final (its nonce was taken by
another transaction, say) is refused on reload and removed then; `compact` removes such
entries while the node runs, so the journal stays about the size of the mempool.

The hashes held are also kept in memory (loaded once at open): a final block that carries
none of this node's acknowledged transactions deletes nothing. A final block's entries
leave in the block's own write (`forget_in`, runtime/ledger_app.py): the block's write is
on the critical path of every block cycle (the primary's FINAL and the follower's next vote
wait for it), and a second durable write there cost a second fsync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import lmdb

from crypto import Hash32


class MempoolJournal:
    def __init__(self, env: lmdb.Environment) -> None:
        self._env = env
        self._db = env.open_db(b"mempool")
        with env.begin(db=self._db) as txn:
            self._held = {bytes(key) for key in txn.cursor().iternext(keys=True, values=False)}

    def record(self, entries: Iterable[tuple[Hash32, bytes]]) -> None:
        """Write (hash, raw) pairs in one durable transaction (raises lmdb.Error)."""
        entries = list(entries)
        with self._env.begin(db=self._db, write=True) as txn:
            for tx_hash, raw in entries:
                txn.put(tx_hash, raw)
        self._held.update(tx_hash for tx_hash, _ in entries)

    def forget(self, tx_hashes: Iterable[Hash32]) -> None:
        held = [tx_hash for tx_hash in tx_hashes if tx_hash in self._held]
        if not held:
            return
        with self._env.begin(write=True) as txn:
            self.forget_in(txn, held)
        self.forgotten(held)

    def forget_in(self, txn: lmdb.Transaction, tx_hashes: Iterable[Hash32]) -> None:
        """`forget` inside another write transaction (a final block's, chain.Store.append:
        one durable write where there were two); `forgotten` once it is committed, so that
        a transaction that aborts (a full map, retried) finds the entries again."""
        for tx_hash in tx_hashes:
            if tx_hash in self._held:
                txn.delete(tx_hash, db=self._db)

    def forgotten(self, tx_hashes: Iterable[Hash32]) -> None:
        """The entries of `tx_hashes` left the disk in a committed `forget_in`."""
        self._held.difference_update(tx_hashes)

    def __len__(self) -> int:
        return len(self._held)

    def entries(self) -> list[tuple[Hash32, bytes]]:
        with self._env.begin(db=self._db) as txn:
            return [(bytes(key), bytes(value)) for key, value in txn.cursor()]

    def compact(self, keep: Callable[[Hash32], bool]) -> int:
        """Remove the entries `keep` refuses; how many went."""
        stale = [tx_hash for tx_hash in self._held if not keep(tx_hash)]
        self.forget(stale)
        return len(stale)
