"""Merkle proofs a light client (the smartphone) checks with nothing but a block header
(architecture decision 2): the list of trie nodes from the root to the key, verified with a
plain `HexaryTrie.get_from_proof(root, key, nodes)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trie import HexaryTrie
from trie.exceptions import BadTrieProof, MissingTrieNode

from chain.chain import Chain
from chain.errors import LedgerError
from chain.state import NodeOverlay, trie_key
from chain.types import BlockHeader, index_key
from crypto import Hash32

KINDS = ("transaction", "receipt", "state")


class InvalidProof(LedgerError):
    """The nodes do not lead from the header's root to the claimed value."""


@dataclass(frozen=True)
class Proof:
    header: BlockHeader
    kind: str
    key: bytes  # the trie key: rlp(index) or keccak256(state key)
    value: bytes  # b"" proves absence
    nodes: tuple[Any, ...]  # decoded rlp nodes, root first

    @property
    def root(self) -> Hash32:
        return root_for(self.header, self.kind)


def root_for(header: BlockHeader, kind: str) -> Hash32:
    if kind == "transaction":
        return header.transaction_root
    if kind == "receipt":
        return header.receipt_root
    if kind == "state":
        return header.state_root
    raise InvalidProof(f"unknown proof kind {kind!r}")


def _prove(chain: Chain, header: BlockHeader, kind: str, key: bytes) -> Proof:
    """BlockPruned when the base rose past `header` while the walk ran (RPC reads race the
    loop's pruning: ChainStore.check_held)."""
    trie = HexaryTrie(NodeOverlay(chain.store), root_for(header, kind))
    try:
        nodes = trie.get_proof(key)  # type: ignore[no-untyped-call]  # py-trie leaves get_proof unannotated
        value = trie.get(key)
    except (MissingTrieNode, KeyError):  # (get_proof lets the node table's KeyError through)
        chain.store.check_held(header.number)
        raise
    return Proof(header, kind, key, value, tuple(nodes))


def prove_transaction(chain: Chain, tx_hash: Hash32) -> Proof:
    height, index = chain.store.transaction_location(tx_hash)
    return _prove(chain, chain.block(height).header, "transaction", index_key(index))


def prove_receipt(chain: Chain, tx_hash: Hash32) -> Proof:
    height, index = chain.store.transaction_location(tx_hash)
    return _prove(chain, chain.block(height).header, "receipt", index_key(index))


def prove_state(chain: Chain, state_key: bytes, height: int | None = None) -> Proof:
    header = chain.head.header if height is None else chain.block(height).header
    return _prove(chain, header, "state", trie_key(state_key))


def verify_proof(header: BlockHeader, kind: str, key: bytes, nodes: Sequence[Any]) -> bytes:
    """The value the proof shows under `key` (b"" for absence); InvalidProof otherwise."""
    try:
        value: bytes = HexaryTrie.get_from_proof(  # type: ignore[no-untyped-call]  # unannotated in py-trie
            root_for(header, kind), key, list(nodes))
        return value
    except (BadTrieProof, KeyError, ValueError, TypeError, IndexError) as exc:
        raise InvalidProof(f"{kind} proof does not verify: {exc}") from exc
