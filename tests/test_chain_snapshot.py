"""State snapshots (chain/snapshot.py) and the store's base height (pruning, restore):
a restored store has byte-identical trie nodes, executes on and proves; every kind of
bad chunk is refused without changing the restore; pruned blocks answer BlockPruned;
`verify` checks a store from its base."""

from __future__ import annotations

from pathlib import Path

import pytest
import rlp

from chain import InvalidBlock, InvalidCertificate, UnknownBlock, snapshot
from chain.errors import BlockPruned
from chain.proofs import prove_state, verify_proof
from chain.snapshot import (
    BadChunk,
    ChunkFault,
    MissingNode,
    StateRestore,
    check_base_block,
    check_state,
    encode_chunk,
    snapshot_chunks,
)
from chain.state import NodeOverlay, account_key
from chain.triebuild import reachable_nodes
from chain.verify import verify_chain
from contracts.addresses import TOKEN
from tests.support import DevChain, certify, open_chain

CHUNK_BYTES = 4096  # small chunks: a few hundred accounts make a dozen of them
ACCOUNTS = 300
BLOCKS = 6


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "CHUNK_BYTES", CHUNK_BYTES)


def _grow(dev: DevChain, blocks: int) -> None:
    for height in range(blocks):
        sender, recipient = dev.accounts[height], dev.accounts[-1 - height]
        executed, _ = dev.chain.build([dev.tx(sender, TOKEN, "transfer", [recipient.address, 5])],
                                      timestamp_ms=dev.clock_ms + height + 1, proposer=0, view=0)
        dev.chain.append(certify(dev, executed.block))


def _source(tmp_path: Path) -> DevChain:
    dev = DevChain.create(tmp_path / "source", accounts=ACCOUNTS)
    _grow(dev, BLOCKS)
    return dev


def _chunks(dev: DevChain) -> list[bytes]:
    return [encode_chunk(chunk) for chunk in snapshot_chunks(dev.chain.store, dev.chain.head.header.state_root)]


def _restore(dev: DevChain, chunks: list[bytes]) -> dict[bytes, bytes]:
    restore = StateRestore(dev.chain.head.header.state_root, chunk_bytes_max=1 << 20)
    nodes: dict[bytes, bytes] = {}
    for chunk in chunks:
        assert not restore.done
        nodes.update(restore.add(chunk))
    assert restore.done
    return nodes


def test_restore_rebuilds_the_trie_and_the_node_executes_and_proves(tmp_path: Path) -> None:
    source = _source(tmp_path)
    root = source.chain.head.header.state_root
    chunks = _chunks(source)
    assert len(chunks) >= 5
    assert all(len(c) < CHUNK_BYTES + 1024 for c in chunks)
    nodes = _restore(source, chunks)
    assert nodes == reachable_nodes(NodeOverlay(source.chain.store), root)

    joined = DevChain(open_chain(tmp_path / "joined", source.chain.genesis), source.accounts, dict(source.nonces),
                      source.clock_ms)
    joined.chain.store.put_nodes(nodes)
    joined.chain.install_snapshot(source.chain.head)
    assert joined.chain.height == BLOCKS and joined.chain.store.base_height() == BLOCKS
    # both chains execute the next block alike
    tx = source.tx(source.accounts[50], TOKEN, "transfer", [source.accounts[60].address, 7])
    executed, _ = source.chain.build([tx], timestamp_ms=source.clock_ms + 100, proposer=0, view=0)
    block = certify(source, executed.block)
    source.chain.append(block)
    joined.chain.append(block)
    assert joined.chain.head.header.state_root == source.chain.head.header.state_root
    proof = prove_state(joined.chain, account_key(source.accounts[60].address))
    assert rlp.decode(verify_proof(proof.header, "state", proof.key, proof.nodes))[1] != b""
    with pytest.raises(BlockPruned) as pruned:
        joined.chain.block(3)
    assert (pruned.value.height, pruned.value.base) == (3, BLOCKS)
    with pytest.raises(UnknownBlock, match="receipts of block"):  # a snapshot brings no receipts
        joined.chain.receipt_at(joined.chain.block(BLOCKS).header, 0)
    assert list(verify_chain(joined.chain, require_certificates=True)) == []


def test_two_nodes_cut_the_same_chunks(tmp_path: Path) -> None:
    first, second = _source(tmp_path / "a"), _source(tmp_path / "b")
    assert first.chain.head.header.state_root == second.chain.head.header.state_root
    assert _chunks(first) == _chunks(second)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1:]


def test_every_bad_chunk_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    source = _source(tmp_path)
    chunks = _chunks(source)
    first, second = rlp.decode(chunks[0]), rlp.decode(chunks[1])
    bad = {
        ChunkFault.UNDECODABLE: chunks[1][:-1],
        ChunkFault.WRONG_NODE: encode_chunk([first[0], *first[2:]]),
        ChunkFault.EARLY_END: encode_chunk(first[:-1]),
        ChunkFault.LATE_END: encode_chunk([*first, *second[:1]]),
        ChunkFault.TOO_LARGE: encode_chunk([*first, b"\x00" * (1 << 20)]),
    }
    restore = StateRestore(source.chain.head.header.state_root, chunk_bytes_max=1 << 20)
    for fault, data in bad.items():
        with pytest.raises(BadChunk) as refused:
            restore.add(data)
        assert refused.value.reason is fault, (fault, refused.value)
    # a flipped byte inside a node: that node hashes wrong
    with pytest.raises(BadChunk) as refused:
        restore.add(_flip(chunks[0], len(chunks[0]) - 3))
    assert refused.value.reason is ChunkFault.WRONG_NODE
    assert restore.chunks == 0
    # the good chunks still restore, from the start
    for chunk in chunks:
        restore.add(chunk)
    assert restore.done
    with pytest.raises(BadChunk) as refused:
        restore.add(chunks[-1])
    assert refused.value.reason is ChunkFault.LATE_END


def test_check_base_block_needs_finality_and_the_named_body(tmp_path: Path) -> None:
    source = _source(tmp_path)
    genesis = source.chain.genesis
    args = {"chain_id": genesis.chain_id, "bookkeepers": genesis.bookkeeper_keys, "t": genesis.t}
    head = source.chain.head
    check_base_block(head, **args)
    with pytest.raises(InvalidCertificate):
        check_base_block(certify(source, head.with_certificate(None), finality=False), **args)
    with pytest.raises(InvalidBlock):
        check_base_block(head.with_certificate(None), **args)
    other = source.chain.block(2).transactions
    with pytest.raises(InvalidBlock) as wrong:
        check_base_block(type(head)(head.header, other, head.certificate), **args)
    assert wrong.value.what == "transaction_root"


def test_pruned_store_answers_head_and_proofs_and_verifies_from_its_base(tmp_path: Path) -> None:
    source = _source(tmp_path)
    store = source.chain.store
    assert store.prune_below(4, blocks_max=2) == 3  # bounded: blocks 1 and 2
    assert store.prune_below(4, blocks_max=2) == 4
    assert store.prune_below(4, blocks_max=2) == 4  # nothing left below 4
    assert store.base_height() == 4
    with pytest.raises(BlockPruned):
        store.block(3)
    assert store.block(0).number == 0 and store.block(4).number == 4
    tx_hash = source.chain.block(5).transactions[0].hash
    assert store.transaction_location(tx_hash) == (5, 0)
    proof = prove_state(source.chain, account_key(source.accounts[0].address))
    verify_proof(proof.header, "state", proof.key, proof.nodes)
    assert list(verify_chain(source.chain, require_certificates=True)) == []
    assert store.prune_below(BLOCKS + 5, blocks_max=100) == BLOCKS  # never the head
    store.close()
    reopened = open_chain(tmp_path / "source", source.chain.genesis)
    assert reopened.height == BLOCKS and reopened.store.base_height() == BLOCKS


def test_verify_finds_a_missing_node_of_the_base_state(tmp_path: Path) -> None:
    source = _source(tmp_path)
    nodes = _restore(source, _chunks(source))
    joined = open_chain(tmp_path / "joined", source.chain.genesis)
    # a node the fresh store (genesis state) does not share with the snapshot's state
    victim = min(set(nodes) - set(reachable_nodes(NodeOverlay(joined.store), joined.head.header.state_root)))
    del nodes[victim]
    joined.store.put_nodes(nodes)
    joined.install_snapshot(source.chain.head)
    with pytest.raises(MissingNode):
        check_state(joined.store, source.chain.head.header.state_root)
    findings = list(verify_chain(joined))
    assert [f.height for f in findings] == [BLOCKS] and "missing" in findings[0].problem
