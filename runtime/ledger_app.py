"""The ledger as consensus sees it (consensus.Application): the final chain, the mempool
it proposes from, and the hooks that run after a block became final."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import lmdb

from chain import Block, TxReason, UnknownBlock
from chain.chain import Chain
from chain.execution import ExecutedBlock
from chain.journal import MempoolJournal
from chain.mempool import Mempool
from consensus import LmdbStorage, StoredState

log = logging.getLogger("gridchain.ledger")

FinalHook = Callable[[ExecutedBlock], None]


class LedgerApp:
    def __init__(self, chain: Chain, mempool: Mempool, consensus_storage: LmdbStorage, journal: MempoolJournal, *,
                 empty_blocks: bool, build_ms_max: int) -> None:
        self.chain = chain
        self.mempool = mempool
        self.consensus_storage = consensus_storage  # in the chain store's environment
        self.journal = journal  # likewise
        self.empty_blocks = empty_blocks
        self.build_ms_max = build_ms_max
        self.on_final: list[FinalHook] = []
        # The block finalized last, as stored: the primary sends it in a FINAL to every other
        # replica right away, and decoding it back from the store costs ~40 ms per 2,000 txs.
        self._last_final: Block | None = None

    def final_height(self) -> int:
        return self.chain.height

    def final_hash(self) -> bytes:
        return self.chain.head.hash

    def pending_transactions(self) -> int:
        return len(self.mempool)

    def propose(self, height: int, view: int, proposer: int, clock_ms: int,
                budget_ms: int | None = None) -> Block | None:
        assert height == self.chain.height + 1, "proposal above a non-final block"
        limits = self.chain.genesis.limits
        candidates = self.mempool.candidates(self.chain.head_state(), limits.block_txs_max)
        if not candidates and not self.empty_blocks:
            return None
        # Block time is the node's wall clock as the replica passed it; Executor.build keeps
        # it strictly increasing along the chain.
        # A budget for building: every replica executes the block again, and a block cycle
        # longer than the commit timeout looks like a stuck primary. It counts the loop
        # thread's CPU time, not the wall clock: on a starved machine (other processes, a
        # shared core) a wall-time budget built blocks of 18 transactions where it built
        # 2,000, the per-block costs took over and throughput fell with the square of the
        # slowdown (issue 10); the replicas' timeouts follow the measured block cycle instead.
        deadline = time.thread_time() + min(budget_ms or self.build_ms_max, self.build_ms_max) / 1000
        executed, rejected = self.chain.build(candidates, timestamp_ms=clock_ms,
                                              proposer=proposer, view=view,
                                              full=lambda: time.thread_time() > deadline)
        for tx, error in rejected:
            if error.reason == TxReason.INTERNAL_ERROR:  # a bug: its traceback, every time
                log.error("dropping pending tx 0x%s: %s", tx.hash.hex()[:16], error, exc_info=error.__cause__)
            else:
                log.info("dropping pending tx 0x%s: %s", tx.hash.hex()[:16], error)
            self.mempool.remove(tx)
        if not executed.block.transactions and not self.empty_blocks:
            return None
        return executed.block

    def check(self, block: Block) -> None:
        self.chain.execute(block)

    def finalize(self, block: Block, state: StoredState | None = None) -> None:
        """Append `block` as the final head; with the consensus record it makes true and
        the removal of the mempool journal's entries of its transactions in the same store
        transaction: one durable write per final block (chain/journal.py says why), and a
        kill -9 leaves the block and its record together or neither. The record is the
        finalizing replica's `state` (a `Finalize` action); block sync passes none, and the
        stored record moves past the block instead (`StoredState.final_at`)."""
        hashes = [tx.hash for tx in block.transactions]

        def also(txn: lmdb.Transaction) -> None:
            if state is not None:
                self.consensus_storage.put(txn, state)
            else:
                stored = self.consensus_storage.get(txn)
                moved = stored.final_at(block.number)
                if moved != stored:
                    self.consensus_storage.put(txn, moved)
            self.journal.forget_in(txn, hashes)

        executed = self.chain.append(block, also)
        self.journal.forgotten(hashes)
        self._last_final = block
        self.mempool.remove_committed(list(block.transactions), self.chain.head_state())
        for hook in self.on_final:
            hook(executed)

    def final_block(self, height: int) -> Block | None:
        if height > self.chain.height:
            return None
        if self._last_final is not None and self._last_final.number == height:
            return self._last_final
        try:
            return self.chain.block(height)
        except UnknownBlock:
            return None
