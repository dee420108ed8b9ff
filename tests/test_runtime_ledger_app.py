"""LedgerApp: the build budget counts the loop's CPU time, never the wall clock; a final block
is one durable write with its journal deletions and the consensus record it makes true."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import rlp

from chain import Block, BlockHeader, Transaction
from chain.journal import MempoolJournal
from chain.mempool import Mempool, MempoolLimits
from consensus import LmdbStorage, StoredState
from consensus.log import Entry
from consensus.sync import BlockSync, SyncRejected, SyncResponse, sync_message_from_wire
from contracts.addresses import TOKEN
from runtime.ledger_app import LedgerApp
from tests.support import DevChain, certify, key

PENDING = 50


@pytest.fixture
def app(tmp_path: Path) -> LedgerApp:
    dev = DevChain.create(tmp_path / "chain", accounts=PENDING)
    genesis = dev.chain.genesis
    mempool = Mempool(genesis.chain_id, genesis.limits, MempoolLimits(), dev.chain.signatures)
    for sender in dev.accounts:
        mempool.add(Transaction.create(sender, chain_id=genesis.chain_id, nonce=0, to=TOKEN, method="transfer",
                                       args=[key(999).address, 1]), dev.chain.head_state())
    return LedgerApp(dev.chain, mempool, LmdbStorage(dev.chain.store.env), MempoolJournal(dev.chain.store.env),
                     empty_blocks=False, build_ms_max=100)


def _clock_that_jumps(step_s: float):
    now = [0.0]

    def clock() -> float:
        now[0] += step_s
        return now[0]
    return clock


def test_a_starved_machine_still_builds_a_full_block(app: LedgerApp, monkeypatch) -> None:
    """Each look at the wall clock says a second went by (the process waited for a core):
    the block still takes every pending transaction."""
    monkeypatch.setattr(time, "monotonic", _clock_that_jumps(1.0))
    block = app.propose(1, view=0, proposer=0, clock_ms=1_700_000_001_000)
    assert block is not None and len(block.transactions) == PENDING


def test_the_budget_stops_a_block_that_costs_too_much_cpu(app: LedgerApp, monkeypatch) -> None:
    monkeypatch.setattr(time, "thread_time", _clock_that_jumps(0.03))  # 30 ms of CPU per look
    block = app.propose(1, view=0, proposer=0, clock_ms=1_700_000_001_000)
    assert block is not None and 0 < len(block.transactions) < PENDING


class CountingEnv:
    """The store's LMDB environment, counting its write transactions (each one an fsync)."""

    def __init__(self, env) -> None:
        self.env = env
        self.writes = 0

    def begin(self, *args, **kwargs):
        self.writes += bool(kwargs.get("write"))
        return self.env.begin(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.env, name)


def test_a_final_block_takes_its_journal_entries_in_its_own_write(app: LedgerApp) -> None:
    """LedgerApp.finalize: one durable write per final block, the journal's deletions in it
    (they were a second write, a second fsync on every block cycle's critical path)."""
    block = app.propose(1, view=0, proposer=0, clock_ms=1_700_000_001_000)
    assert block is not None
    kept = b"\x07" * 32  # acknowledged, not in this block
    app.journal.record([(tx.hash, rlp.encode(tx)) for tx in block.transactions] + [(kept, b"raw")])
    counting = CountingEnv(app.chain.store.env)
    app.chain.store.env = counting
    app.finalize(block)
    assert counting.writes == 1
    assert len(app.journal) == 1
    assert app.journal.entries() == [(kept, b"raw")]
    assert len(MempoolJournal(counting.env)) == 1  # read back from disk: the deletions are durable


def test_a_journal_deletion_in_an_aborted_write_leaves_the_entries_held(app: LedgerApp) -> None:
    journal = app.journal
    journal.record([(b"\x01" * 32, b"one"), (b"\x02" * 32, b"two")])
    env = app.chain.store.env
    with pytest.raises(RuntimeError), env.begin(write=True) as txn:
        journal.forget_in(txn, [b"\x01" * 32])
        raise RuntimeError("the block's write fails")
    assert len(journal) == 2 and len(journal.entries()) == 2
    with env.begin(write=True) as txn:
        journal.forget_in(txn, [b"\x01" * 32])
    journal.forgotten([b"\x01" * 32])
    assert journal.entries() == [(b"\x02" * 32, b"two")] and len(journal) == 1


def _synced(dev: DevChain, app: LedgerApp, block: Block) -> BlockSync:
    """Block sync that asked peer b"p" for block 1 and gets `block` back (certified)."""
    sync = BlockSync(app, chain_id=dev.chain.genesis.chain_id, set_of=dev.chain.epoch_at)
    assert sync.request(b"p", 1, now_ms=0)
    response = sync_message_from_wire(SyncResponse(1, (certify(dev, block).encoded(),)).to_wire(), 3)
    assert isinstance(response, SyncResponse)
    refused = sync.on_message(b"p", response, now_ms=0)
    assert not [action for action in refused if isinstance(action, SyncRejected)], refused
    return sync


def _dev_app(tmp_path: Path) -> tuple[DevChain, LedgerApp]:
    dev = DevChain.create(tmp_path / "chain", accounts=2)
    tx = dev.tx(dev.accounts[0], TOKEN, "transfer", [key(999).address, 1])
    genesis = dev.chain.genesis
    mempool = Mempool(genesis.chain_id, genesis.limits, MempoolLimits(), dev.chain.signatures)
    mempool.add(tx, dev.chain.head_state())
    return dev, LedgerApp(dev.chain, mempool, LmdbStorage(dev.chain.store.env), MempoolJournal(dev.chain.store.env),
                          empty_blocks=False, build_ms_max=100)


def test_a_block_sync_finalizes_moves_the_consensus_record_in_the_blocks_write(tmp_path: Path) -> None:
    """The replica had logged block 1 (voted for it) when block sync brought it final: the
    stored record drops that entry in the block's own transaction, not at the next load."""
    dev, app = _dev_app(tmp_path)
    block = app.propose(1, view=0, proposer=0, clock_ms=1_700_000_001_000)
    assert block is not None
    entry = Entry.create(2, block.encoded(), b"v", block=block)
    app.consensus_storage.save(StoredState(view=2, normal=True, entry=entry, suspect=b"s"))
    counting = CountingEnv(app.chain.store.env)
    app.chain.store.env = counting
    _synced(dev, app, block)
    assert counting.writes == 1 and app.final_height() == 1
    assert LmdbStorage(counting.env).load() == StoredState(view=2, normal=True, entry=None, suspect=b"s")


def test_a_block_sync_write_that_aborts_keeps_neither_block_nor_record(tmp_path: Path, monkeypatch) -> None:
    """A kill inside the transaction, as tests/crash_finalize.py does on a real node: LMDB
    aborts it, so the record still holds the entry and the head did not move."""
    dev, app = _dev_app(tmp_path)
    block = app.propose(1, view=0, proposer=0, clock_ms=1_700_000_001_000)
    assert block is not None
    logged = StoredState(view=0, normal=True, entry=Entry.create(0, block.encoded(), b"v", block=block))
    app.consensus_storage.save(logged)

    def killed(txn: object, hashes: object) -> None:  # after the record's put, before the commit
        raise RuntimeError("killed inside the write")

    monkeypatch.setattr(app.journal, "forget_in", killed)
    with pytest.raises(RuntimeError):
        _synced(dev, app, block)
    assert app.chain.store.head_height() == 0 and app.consensus_storage.load() == logged


def test_a_final_block_drops_only_the_entries_it_makes_stale() -> None:
    block = Block(BlockHeader(b"\x00" * 32, 2, 1, 0, 0, b"\x00" * 32, b"\x00" * 32, b"\x00" * 32, 0, b""), [], [])
    state = StoredState(view=1, normal=False, entry=Entry.create(1, block.encoded(), b"v", block=block), epoch=1)
    assert state.final_at(1) == state  # the entry is the next height's: kept
    assert state.final_at(2) == StoredState(view=1, normal=False, entry=None, epoch=1)
    assert state.final_at(3).entry is None
