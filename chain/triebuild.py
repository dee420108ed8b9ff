"""Batch updates of the hexary Merkle Patricia trie, node for node what `trie.HexaryTrie`
makes, without its per-key cost (architecture decisions 2 and 4).

`HexaryTrie` stays the reference: proofs are served by `HexaryTrie.get_proof` over the same
node store and checked with `HexaryTrie.get_from_proof`, so every node written here is the
byte-identical rlp HexaryTrie would write, stored under the same key:
  - a node whose rlp is shorter than 32 bytes is embedded in its parent (as a list), any
    other node is stored under keccak256(rlp(node));
  - the root is always stored under its hash, even when short; the empty trie's root is
    keccak256(rlp(b"")) and is not stored.
The trie for a given key -> value mapping is unique, so instead of replaying HexaryTrie's
insert-by-insert algorithm `TrieBatch.commit` walks the old trie once along a sorted batch
of changes and rebuilds only the touched paths (like geth's batch insertion), and
`ordered_root` builds a trie from scratch from its items (like geth's StackTrie).

Paths are hex strings ("0".."f" per nibble): `bytes.hex` and `bytes.fromhex` do the nibble
conversions in C, and sorting hex strings sorts the keys bytewise. A value of b"" deletes,
as in HexaryTrie. Decoded nodes are never mutated once made: they may sit in a shared
`DecodedNodes` cache, which is valid forever because nodes are content-addressed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import rlp
from rlp.codec import decode_raw, encode_raw

from chain.types import index_key
from crypto import Hash32, keccak256

BLANK_ROOT: Hash32 = keccak256(rlp.encode(b""))
DECODED_NODES_MAX = 65_536

# A decoded node: b"" (blank), [hp_path, value_or_child] (leaf, extension) or 17 items
# (branch: 16 children, then the value). A child reference is b"", a 32-byte hash, or the
# embedded child node itself (a list). As rlp.decode gives them: nested lists of bytes.
Node = Any
Change = tuple[str, bytes]  # (hex path, value; b"" deletes)

_NIBBLE = {c: i for i, c in enumerate("0123456789abcdef")}
_HEX = "0123456789abcdef"


class DecodedNodes:
    """Decoded trie nodes by hash, at most `entries_max` (oldest dropped first). Nodes are
    content-addressed, so one cache serves every state of a chain; RPC reads on worker
    threads share it with the node loop, hence an OrderedDict: each of get, set and
    popitem is one C call under the GIL, where `del d[next(iter(d))]` is not."""

    def __init__(self, entries_max: int = DECODED_NODES_MAX) -> None:
        assert entries_max > 0
        self.entries_max = entries_max
        self._nodes: OrderedDict[bytes, list[Any]] = OrderedDict()

    def get(self, node_hash: bytes) -> list[Any] | None:
        return self._nodes.get(node_hash)

    def put(self, node_hash: bytes, node: list[Any]) -> None:
        nodes = self._nodes
        nodes[node_hash] = node
        if len(nodes) > self.entries_max:
            nodes.popitem(last=False)

    def __len__(self) -> int:
        return len(self._nodes)


def _hp(path: str, leaf: bool) -> bytes:
    """Hex-prefix encoding of a path (Ethereum yellow paper, appendix C)."""
    if len(path) & 1:
        return bytes.fromhex(("3" if leaf else "1") + path)
    return bytes.fromhex(("20" if leaf else "00") + path)


def _unhp(encoded: bytes) -> tuple[str, bool]:
    """(path, is_leaf) of a hex-prefix encoded path."""
    flag = encoded[0] >> 4
    assert flag <= 3, f"bad hex-prefix flag in {encoded!r}"
    path = encoded.hex()
    return (path[1:] if flag & 1 else path[2:]), flag >= 2


class TrieBatch:
    """Reads and writes trie nodes of one node store. `db` maps node hash -> rlp node; new
    nodes are written into it (it may be a NodeOverlay or a plain dict)."""

    def __init__(self, db: MutableMapping[bytes, bytes], cache: DecodedNodes | None = None) -> None:
        self.db = db
        self.cache = cache

    # reading ----------------------------------------------------------------------------
    def node(self, ref: Node) -> Node:
        """The decoded node a child reference (or a root hash) points at."""
        if type(ref) is list or not ref:
            return ref
        cache = self.cache
        node = cache.get(ref) if cache is not None else None
        if node is None:
            if ref == BLANK_ROOT:
                return b""
            node = decode_raw(self.db[ref], True, False)[0]
            if cache is not None:
                cache.put(ref, node)
        return node

    def get(self, root: Hash32, key: bytes) -> bytes:
        """The value under `key` (b"" when absent), as HexaryTrie(db, root).get(key) (which
        raises instead for a key that ends inside an extension)."""
        path = key.hex()
        node = self.node(root)
        while node:
            if len(node) == 17:
                if not path:
                    value: bytes = node[16]
                    return value
                node = self.node(node[_NIBBLE[path[0]]])
                path = path[1:]
                continue
            node_path, leaf = _unhp(node[0])
            if leaf:
                return node[1] if path == node_path else b""
            if not path.startswith(node_path):
                return b""
            path = path[len(node_path):]
            node = self.node(node[1])
        return b""

    # writing ----------------------------------------------------------------------------
    def commit(self, root: Hash32, changes: Iterable[Change]) -> Hash32:
        """Apply `changes` (hex path -> value, b"" deletes; sorted by path, each path once)
        to the trie at `root`; write the new nodes and return the new root."""
        batch = list(changes)
        if not batch:
            return root
        assert _strictly_sorted(batch), "changes must be sorted by path, each path once"
        return self._store_root(self._apply(self.node(root), batch, 0, len(batch), 0))

    def build(self, items: Iterable[Change]) -> Hash32:
        """Root of a new trie holding `items` (sorted by path, unique, values non-empty)."""
        batch = list(items)
        assert _strictly_sorted(batch), "items must be sorted by path, each path once"
        return self._store_root(self._build(batch, 0, len(batch), 0))

    def _store_root(self, node: Node) -> Hash32:
        if not node:
            return BLANK_ROOT
        encoded = encode_raw(node)
        root = keccak256(encoded)
        self.db[root] = encoded
        if self.cache is not None:
            self.cache.put(root, node)
        return root

    def _ref(self, node: Node) -> Node:
        """How a parent refers to `node`: embedded when its rlp is short, else its hash
        (and the node is written)."""
        if not node:
            return b""
        encoded = encode_raw(node)
        if len(encoded) < 32:
            return node
        node_hash = keccak256(encoded)
        self.db[node_hash] = encoded
        if self.cache is not None:
            self.cache.put(node_hash, node)
        return node_hash

    # The recursion works on one sorted list of full paths: a node at `depth` nibbles owns
    # items[lo:hi], whose paths all share their first `depth` nibbles.

    def _build(self, items: list[Change], lo: int, hi: int, depth: int) -> Node:
        """The node holding items[lo:hi] (non-empty values), not yet referenced."""
        if hi - lo <= 1:
            if hi == lo:
                return b""
            path, value = items[lo]
            return [_hp(path[depth:], True), value]
        first, last = items[lo][0], items[hi - 1][0]
        cut = depth
        limit = min(len(first), len(last))
        while cut < limit and first[cut] == last[cut]:
            cut += 1
        if cut == depth:
            return self._build_branch(items, lo, hi, depth)
        return [_hp(first[depth:cut], False), self._ref(self._build_branch(items, lo, hi, cut))]

    def _build_branch(self, items: list[Change], lo: int, hi: int, depth: int) -> list[Any]:
        branch: list[Any] = [b""] * 17
        if len(items[lo][0]) == depth:
            branch[16] = items[lo][1]
            lo += 1
        while lo < hi:
            nibble = items[lo][0][depth]
            end = lo + 1
            while end < hi and items[end][0][depth] == nibble:
                end += 1
            branch[_NIBBLE[nibble]] = self._ref(self._build(items, lo, end, depth + 1))
            lo = end
        return branch

    def _apply(self, node: Node, changes: list[Change], lo: int, hi: int, depth: int) -> Node:
        """`node` (at `depth`) with changes[lo:hi] applied, not yet referenced."""
        if not node:
            inserts = [change for change in changes[lo:hi] if change[1]]
            return self._build(inserts, 0, len(inserts), depth)
        if len(node) == 17:
            return self._apply_branch(node, changes, lo, hi, depth, -1)
        path, leaf = _unhp(node[0])
        if leaf:
            key, value = changes[lo]
            if hi - lo == 1 and len(key) == depth + len(path) and key.endswith(path):
                return [node[0], value] if value else b""  # the common case: a new value
            merged = _merge_leaf(depth, path, node[1], changes[lo:hi])
            return self._build(merged, 0, len(merged), depth)
        # sorted paths: when the first and the last follow the extension, all do
        if changes[lo][0].startswith(path, depth) and changes[hi - 1][0].startswith(path, depth):
            below = self._apply(self.node(node[1]), changes, lo, hi, depth + len(path))
            return self._join(path, below)
        # Some change leaves the extension's path: continue on the equivalent branch.
        branch: list[Any] = [b""] * 17
        slot = _NIBBLE[path[0]]
        if len(path) == 1:
            branch[slot] = node[1]
            return self._apply_branch(branch, changes, lo, hi, depth, -1)
        branch[slot] = [_hp(path[1:], False), node[1]]
        return self._apply_branch(branch, changes, lo, hi, depth, slot)

    def _apply_branch(self, node: list[Any], changes: list[Change], lo: int, hi: int, depth: int,
                      pending: int) -> Node:
        """Branch `node` with changes[lo:hi] applied; slot `pending` (if >= 0) holds a node
        that is not referenced yet."""
        branch = list(node)
        touched = [pending] if pending >= 0 else []
        if len(changes[lo][0]) == depth:
            branch[16] = changes[lo][1]
            lo += 1
        while lo < hi:
            nibble = changes[lo][0][depth]
            end = lo + 1
            while end < hi and changes[end][0][depth] == nibble:
                end += 1
            slot = _NIBBLE[nibble]
            child = branch[slot] if slot == pending else self.node(branch[slot])
            branch[slot] = self._apply(child, changes, lo, end, depth + 1)
            if slot != pending:
                touched.append(slot)
            lo = end
        if branch.count(b"") <= 15:  # two or more children and value: stays a branch
            for slot in touched:
                branch[slot] = self._ref(branch[slot])
            return branch
        for slot in range(16):
            if branch[slot]:
                child = branch[slot] if slot in touched else self.node(branch[slot])
                return self._join(_HEX[slot], child)
        if branch[16]:
            return [_hp("", True), branch[16]]
        return b""

    def _join(self, prefix: str, child: Node) -> Node:
        """The node for path `prefix` followed by `child` (merged into one leaf or
        extension when the child is one)."""
        if not child:
            return b""
        if len(child) == 2:
            path, leaf = _unhp(child[0])
            return [_hp(prefix + path, leaf), child[1]]
        return [_hp(prefix, False), self._ref(child)]


def _strictly_sorted(batch: list[Change]) -> bool:
    return all(left[0] < right[0] for left, right in zip(batch, batch[1:], strict=False))


def _merge_leaf(depth: int, path: str, value: bytes, changes: list[Change]) -> list[Change]:
    """The items under a leaf at `depth` (its path -> value) after `changes`, as full-length
    paths would be at `depth` (padded with the leaf's first `depth` nibbles), sorted,
    deletions dropped."""
    pad = changes[0][0][:depth]
    merged = dict(changes)
    merged.setdefault(pad + path, value)
    return sorted((key, val) for key, val in merged.items() if val)


def ordered_root(db: MutableMapping[bytes, bytes], items: list[bytes]) -> Hash32:
    """Root of the trie mapping rlp(i) -> items[i], written into `db` (as HexaryTrie would
    with one insert per item). rlp(i) is not in index order once i > 127: sort the paths."""
    pairs = sorted((index_key(index).hex(), item) for index, item in enumerate(items) if item)
    return TrieBatch(db).build(pairs)


def child_hashes(node: Node) -> list[bytes]:
    """The hashes a decoded node refers to, in slot order; those inside an embedded child
    where that child sits (a leaf's value is no reference)."""
    found: list[bytes] = []
    _collect_hashes(node, found)
    return found


def _collect_hashes(node: Node, found: list[bytes]) -> None:
    if len(node) == 17:
        children = node[:16]
    elif node and not _unhp(node[0])[1]:
        children = [node[1]]
    else:
        return  # blank or leaf
    for child in children:
        if type(child) is list:
            _collect_hashes(child, found)  # embedded: shorter than 32 bytes, so shallow
        elif child:
            found.append(child)


def reachable_nodes(db: Mapping[bytes, bytes], root: Hash32) -> dict[bytes, bytes]:
    """Every stored node reachable from `root` (hash -> rlp): for tests and audits."""
    found: dict[bytes, bytes] = {}
    if root == BLANK_ROOT:
        return found
    pending = [root]
    while pending:
        ref = pending.pop()
        if ref in found:
            continue
        found[ref] = db[ref]
        pending.extend(child_hashes(decode_raw(found[ref], True, False)[0]))
    return found
