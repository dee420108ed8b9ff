"""Old states collected by mark and sweep (chain/prune.py, runtime/statecollect.py): after
pruning raised the base, the trie nodes only old states held are gone, every kept root
(each block from the base to the head, block 0, a snapshot's state) still walks and hashes
whole, a block written while the mark ran keeps its nodes, proofs and `verify` still work,
and the chain goes on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from trie.exceptions import MissingTrieNode

from chain.errors import BlockPruned
from chain.proofs import prove_receipt, prove_state, prove_transaction, verify_proof
from chain.prune import kept_roots, mark, sweep_batch
from chain.snapshot import MissingNode, check_state
from chain.state import account_key, trie_key
from chain.verify import verify_chain
from contracts.addresses import TOKEN
from runtime.statecollect import StateCollector
from tests.support import DevChain, certify

BLOCKS = 12
BASE = 8


def _block(dev: DevChain, height: int) -> None:
    txs = [dev.tx(dev.accounts[(height + i) % len(dev.accounts)], TOKEN, "transfer",
                  [dev.accounts[(height * 3 + i) % len(dev.accounts)].address, 1 + i]) for i in range(4)]
    executed, rejected = dev.chain.build(txs, timestamp_ms=dev.clock_ms + height, proposer=0, view=0)
    assert not rejected
    dev.chain.append(certify(dev, executed.block))


@pytest.fixture
def dev(tmp_path: Path) -> DevChain:
    dev = DevChain.create(tmp_path, accounts=40)
    for height in range(1, BLOCKS + 1):
        _block(dev, height)
    return dev


def _stored(dev: DevChain) -> int:
    return len(dev.chain.store.node_hashes_after(b"", 1 << 30))


def test_nodes_only_old_states_held_are_gone_and_kept_roots_verify(dev: DevChain) -> None:
    chain, store = dev.chain, dev.chain.store
    old_roots = [chain.block(h).header.state_root for h in range(1, BASE)]
    assert store.prune_below(BASE, 64) == BASE
    store.begin_collection()
    marked = mark(store, kept_roots(store, chain.height, []))
    _block(dev, BLOCKS + 1)  # written while the mark's result waits: not marked, must stay
    before = _stored(dev)
    deleted, cursor = sweep_batch(store, marked, b"", 50)
    total = len(deleted)
    while cursor:
        deleted, cursor = sweep_batch(store, marked, cursor, 50)
        total += len(deleted)
    store.end_collection()
    assert total > 0 and _stored(dev) == before - total
    for root in old_roots:  # each old state's root node was in no kept trie
        assert store.node(root) is None
        with pytest.raises(MissingNode):
            check_state(store, root)
    for height in [0, *range(BASE, chain.height + 1)]:
        check_state(store, chain.block(height).header.state_root)  # every node there, hashing right
    head = chain.head.header
    key = account_key(dev.accounts[0].address)
    proof = prove_state(chain, key)
    assert verify_proof(head, "state", trie_key(key), proof.nodes) == proof.value != b""
    assert list(verify_chain(chain)) == []
    _block(dev, BLOCKS + 2)  # and the chain goes on
    check_state(store, chain.head.header.state_root)


def test_a_snapshots_state_is_a_kept_root(dev: DevChain) -> None:
    chain, store = dev.chain, dev.chain.store
    snapshot_root = chain.block(4).header.state_root
    stale = chain.block(5).header.state_root
    store.prune_below(BASE, 64)
    _collect(dev, [snapshot_root])
    check_state(store, snapshot_root)
    assert store.node(stale) is None


def test_the_node_collector_marks_off_the_loop_and_sweeps_in_bounded_steps(dev: DevChain) -> None:
    store = dev.chain.store
    stale = dev.chain.block(3).header.state_root
    store.prune_below(BASE, 64)
    collector = StateCollector(store, per_write_max=16)
    assert not collector.running
    collector.start(dev.chain.height, [])
    steps = 0
    deadline = time.monotonic() + 60
    while collector.running:
        collector.step()
        steps += 1
        assert time.monotonic() < deadline
    assert collector.deleted_total > 0 and collector.collected_base == BASE
    assert steps > collector.deleted_total // 16  # never more than per_write_max looked at per step
    assert store.node(stale) is None
    check_state(store, dev.chain.head.header.state_root)


def _collect(dev: DevChain, also_kept: list[bytes] | None = None) -> None:
    """One whole collection: mark from the kept roots (and `also_kept`), sweep to the end."""
    store = dev.chain.store
    store.begin_collection()
    marked = mark(store, kept_roots(store, dev.chain.height, also_kept or []))
    cursor = b""
    while True:
        _, cursor = sweep_batch(store, marked, cursor, 1_000)
        if not cursor:
            break
    store.end_collection()


def _prune_at_first_node_read(monkeypatch: pytest.MonkeyPatch, dev: DevChain) -> None:
    """The loop's pruning and a whole collection, run between a read's height check (the
    block read) and its first trie node: how an RPC read on the worker thread is overtaken."""
    store = dev.chain.store
    read = store.node

    def overtaken(node_hash: bytes) -> bytes | None:
        monkeypatch.setattr(store, "node", read)
        assert store.prune_below(BASE, 64) == BASE
        _collect(dev)
        return read(node_hash)

    monkeypatch.setattr(store, "node", overtaken)


@pytest.mark.parametrize("kind", ["state", "transaction", "receipt proof", "receipt"])
def test_a_read_overtaken_by_pruning_gets_the_typed_pruned_error(dev: DevChain, monkeypatch: pytest.MonkeyPatch,
                                                                 kind: str) -> None:
    height = 3
    block = dev.chain.block(height)
    reads = {"state": lambda: prove_state(dev.chain, account_key(dev.accounts[0].address), height),
             "transaction": lambda: prove_transaction(dev.chain, block.transactions[0].hash),
             "receipt proof": lambda: prove_receipt(dev.chain, block.transactions[0].hash),
             "receipt": lambda: dev.chain.receipt_at(block.header, 0)}
    _prune_at_first_node_read(monkeypatch, dev)
    with pytest.raises(BlockPruned) as caught:  # RPC answers it with -32004, as for a later read
        reads[kind]()
    assert (caught.value.height, caught.value.base) == (height, BASE)


def test_a_node_missing_from_a_held_state_stays_a_loud_error(dev: DevChain) -> None:
    """Only a base that rose explains a missing node: at a held height it is a bug."""
    store = dev.chain.store
    store.delete_nodes([dev.chain.head.header.state_root])
    with pytest.raises((MissingTrieNode, KeyError)):  # not BlockPruned: RPC answers it as the bug it is
        prove_state(dev.chain, account_key(dev.accounts[0].address))
