"""chain.triebuild against the reference trie.HexaryTrie: same roots, same reachable nodes,
same new nodes, for random batches on random tries and for the index-keyed tries; and the
ledger's fast encoders against plain rlp.encode."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from chain import Account, Event, Receipt, State
from chain.execution import encode_receipt, ordered_trie_root
from chain.state import NodeOverlay, trie_key
from chain.triebuild import BLANK_ROOT, DecodedNodes, TrieBatch, ordered_root, reachable_nodes
from chain.types import EMPTY_TRIE_ROOT, index_key

# Few distinct bytes, short keys: many shared prefixes, keys that are prefixes of others.
short_keys = st.binary(max_size=4).map(lambda raw: bytes(b % 3 * 0x11 for b in raw))
hashed_keys = st.integers(0, 400).map(lambda i: trie_key(i.to_bytes(2, "big")))
keys = st.one_of(short_keys, hashed_keys)
# Sizes around 32 bytes decide whether a node is embedded in its parent or hashed.
values = st.one_of(st.binary(min_size=1, max_size=3), st.binary(min_size=25, max_size=40))
changes = st.dictionaries(keys, st.one_of(st.just(b""), values), min_size=1, max_size=40)


class Recorder(MutableMapping[bytes, bytes]):
    """A node store over a read-only base that keeps what was written apart."""

    def __init__(self, base: dict[bytes, bytes]) -> None:
        self.base = base
        self.written: dict[bytes, bytes] = {}

    def __getitem__(self, key: bytes) -> bytes:
        return self.written[key] if key in self.written else self.base[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.written[key] = value

    def __delitem__(self, key: bytes) -> None:
        pass  # like NodeOverlay: nodes are shared, never deleted

    def __contains__(self, key: object) -> bool:
        return key in self.written or key in self.base

    def __iter__(self) -> Iterator[bytes]:
        return iter({**self.base, **self.written})

    def __len__(self) -> int:
        return len({**self.base, **self.written})


def reference_trie(items: dict[bytes, bytes]) -> tuple[dict[bytes, bytes], bytes]:
    trie = HexaryTrie({})
    with trie.squash_changes() as batch:
        for key in sorted(items):
            batch[key] = items[key]
    return dict(trie.db), trie.root_hash


def reference_update(base: dict[bytes, bytes], root: bytes,
                     batch: dict[bytes, bytes]) -> tuple[Recorder, bytes]:
    store = Recorder(base)
    trie = HexaryTrie(store, root)
    with trie.squash_changes() as squashed:
        for key in sorted(batch):
            squashed[key] = batch[key]
    return store, trie.root_hash


def committed(base: dict[bytes, bytes], root: bytes, batch: dict[bytes, bytes],
              cache: DecodedNodes | None = None) -> tuple[Recorder, bytes]:
    store = Recorder(base)
    new_root = TrieBatch(store, cache).commit(root, sorted((key.hex(), value) for key, value in batch.items()))
    return store, new_root


def assert_same_trie(expected: Recorder, expected_root: bytes, got: Recorder, got_root: bytes) -> None:
    assert got_root == expected_root
    reachable = reachable_nodes(got, got_root)
    assert reachable == reachable_nodes(expected, expected_root)
    # the nodes new to the store are HexaryTrie's, and nothing unreachable is written
    base = expected.base
    assert {k: v for k, v in got.written.items() if k not in base} == {
        k: v for k, v in expected.written.items() if k not in base}
    assert set(got.written) <= set(reachable)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=40), changes)
def test_commit_matches_hexary_trie(existing: dict[bytes, bytes], batch: dict[bytes, bytes]) -> None:
    base, root = reference_trie(existing)
    expected, expected_root = reference_update(base, root, batch)
    got, got_root = committed(base, root, batch)
    assert_same_trie(expected, expected_root, got, got_root)
    # (HexaryTrie.get itself raises on a key that ends inside an extension: compare with
    # the mapping instead)
    final = {key: value for key, value in (existing | batch).items() if value}
    reader = TrieBatch(got)
    for key in set(existing) | set(batch) | {key[:1] for key in batch}:
        assert reader.get(got_root, key) == final.get(key, b"")


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, values, min_size=1, max_size=40), st.data())
def test_deleting_everything_gives_the_empty_root(existing: dict[bytes, bytes], data: st.DataObject) -> None:
    base, root = reference_trie(existing)
    extra = data.draw(st.dictionaries(keys, st.just(b""), max_size=5))  # absent keys too
    batch = {key: b"" for key in existing} | extra
    got, got_root = committed(base, root, batch)
    assert got_root == BLANK_ROOT == HexaryTrie.BLANK_NODE_HASH
    assert got.written == {}


@settings(max_examples=100, deadline=None)
@given(keys, values, st.dictionaries(keys, values, max_size=3))
def test_single_key_and_short_root(key: bytes, value: bytes, existing: dict[bytes, bytes]) -> None:
    # a root shorter than 32 bytes is still stored under its hash, as HexaryTrie does
    base, root = reference_trie(existing)
    expected, expected_root = reference_update(base, root, {key: value})
    got, got_root = committed(base, root, {key: value})
    assert_same_trie(expected, expected_root, got, got_root)
    assert got[got_root] == rlp.encode(HexaryTrie(got, got_root).root_node.raw)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(keys, values, max_size=30), st.lists(changes, min_size=1, max_size=4))
def test_successive_batches_with_a_shared_cache(existing: dict[bytes, bytes],
                                                batches: list[dict[bytes, bytes]]) -> None:
    base, root = reference_trie(existing)
    expected_base, got_base = dict(base), dict(base)
    expected_root = got_root = root
    cache = DecodedNodes(entries_max=7)  # small: entries are dropped along the way
    for batch in batches:
        expected, expected_root = reference_update(expected_base, expected_root, batch)
        got, got_root = committed(got_base, got_root, batch, cache)
        assert_same_trie(expected, expected_root, got, got_root)
        expected_base.update(expected.written)
        got_base.update(got.written)
    assert len(cache) <= 7


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(hashed_keys, values, min_size=1, max_size=40),
       st.dictionaries(hashed_keys, st.one_of(st.just(b""), values), min_size=1, max_size=40))
def test_hexary_proofs_over_committed_nodes_verify(existing: dict[bytes, bytes], batch: dict[bytes, bytes]) -> None:
    base, root = reference_trie(existing)
    got, got_root = committed(base, root, batch)
    final = {k: v for k, v in (existing | batch).items() if v}
    # fixed-length keys, as in the state trie: HexaryTrie.get raises on a key that ends
    # inside an extension
    trie = HexaryTrie(got, got_root)
    for key in set(existing) | set(batch):
        proof = trie.get_proof(key)
        assert HexaryTrie.get_from_proof(got_root, key, proof) == final.get(key, b"")


@pytest.mark.parametrize("count", range(301))
def test_ordered_root_matches_hexary_trie(count: int) -> None:
    # rlp(i) is not in index order past 127 (0x7f < 0x80 = rlp(0) < 0x81 0x80 = rlp(128))
    items = [rlp.encode([index, b"x" * (index % 45)]) for index in range(count)]
    expected, expected_root = reference_update({}, HexaryTrie.BLANK_NODE_HASH,
                                               {index_key(i): item for i, item in enumerate(items)})
    got: dict[bytes, bytes] = {}
    root = ordered_root(got, items)
    assert root == expected_root
    assert got == expected.written
    assert count or root == EMPTY_TRIE_ROOT
    overlay = NodeOverlay(None)
    assert ordered_trie_root(overlay, items) == expected_root
    assert overlay.written == got


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.binary(min_size=1, max_size=6), values, max_size=30),
       st.lists(st.tuples(st.binary(min_size=1, max_size=6), st.one_of(st.none(), values)), max_size=30))
def test_state_flush_matches_hexary_trie_and_reads_back(genesis: dict[bytes, bytes],
                                                        writes: list[tuple[bytes, bytes | None]]) -> None:
    nodes = NodeOverlay(None)
    state = State(nodes, HexaryTrie.BLANK_NODE_HASH)
    for key, value in genesis.items():
        state.set(key, value)
    state.flush()
    for key in genesis:
        assert state.get(key) == genesis[key]  # read, so the read cache holds it
    final = dict(genesis)
    for key, written in writes:
        if written is None:
            state.delete(key)
            final.pop(key, None)
        else:
            state.set(key, written)
            final[key] = written
    new_root = state.flush()
    reference = HexaryTrie({}, HexaryTrie.BLANK_NODE_HASH)
    for key in sorted(final):
        reference[trie_key(key)] = final[key]
    assert new_root == reference.root_hash == state.root
    for key, _ in writes:
        assert state.get(key) == final.get(key)
    again = State(NodeOverlay(_Source(nodes.written)), new_root)
    for key in set(genesis) | {key for key, _ in writes}:
        assert again.get(key) == final.get(key)


class _Source:
    def __init__(self, nodes: dict[bytes, bytes]) -> None:
        self.nodes = nodes

    def node(self, node_hash: bytes) -> bytes | None:
        return self.nodes.get(node_hash)


typed_values = st.recursive(
    st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.binary(max_size=40),
              st.text(max_size=10), st.booleans()),
    lambda children: st.lists(children, max_size=3),
    max_leaves=8,
)
events = st.builds(lambda c, n, f: Event.create(c, n, f), st.binary(min_size=20, max_size=20),
                   st.text(min_size=1, max_size=10),
                   st.dictionaries(st.text(min_size=1, max_size=8), typed_values, max_size=3))
receipts = st.builds(Receipt, st.integers(0, 1), st.integers(0, 2**64 - 1), st.lists(events, max_size=3),
                     st.binary(max_size=30))


@given(receipts)
def test_encode_receipt_is_rlp_encode(receipt: Receipt) -> None:
    assert encode_receipt(receipt) == rlp.encode(receipt)


@given(st.integers(0, 2**64), st.integers(0, 2**256))
def test_account_encoding_is_rlp_encode(nonce: int, balance: int) -> None:
    account = Account(nonce, balance)
    assert account.encode() == rlp.encode([nonce, balance])
    assert Account.decode(account.encode()) == account
