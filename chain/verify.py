"""Offline audit of a node's store (`node.py verify --data-dir DIR`): every stored block
is re-checked — hash links, re-execution against its parent's state (so every root is
recomputed), commit certificates and their finality proofs when present
(chain.certificate.verify_finality: a certificate alone does not make a block final), the
transaction index and the head pointer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from chain.certificate import verify_finality
from chain.chain import Chain
from chain.errors import LedgerError


@dataclass(frozen=True)
class Finding:
    height: int
    problem: str


def verify_chain(chain: Chain, require_certificates: bool = False) -> Iterator[Finding]:
    """Yield one Finding per problem; nothing when the store is sound."""
    store = chain.store
    head = store.head_height()
    if head is None:
        yield Finding(0, "empty store: no genesis block")
        return
    parent = store.block(0).header
    for height in range(1, head + 1):
        try:
            block = store.block(height)
        except LedgerError as exc:
            yield Finding(height, f"unreadable block: {exc}")
            return
        try:
            chain.executor.state_transition(parent, block, store)
        except LedgerError as exc:
            yield Finding(height, f"state transition fails: {exc}")
        if block.certificate:
            try:
                verify_finality(block.certificate[0], chain_id=chain.genesis.chain_id, height=height,
                                block_hash=block.hash, bookkeepers=chain.genesis.bookkeeper_keys,
                                t=chain.genesis.t)
            except LedgerError as exc:
                yield Finding(height, f"certificate: {exc}")
        elif require_certificates:
            yield Finding(height, "no commit certificate")
        for index, tx in enumerate(block.transactions):
            try:
                location = store.transaction_location(tx.hash)
            except LedgerError:
                yield Finding(height, f"transaction {index} missing from the index")
                continue
            if location != (height, index):
                yield Finding(height, f"transaction {index} indexed at {location}")
        try:
            if store.height_of(block.hash) != height:
                yield Finding(height, "hash index points elsewhere")
        except LedgerError:
            yield Finding(height, "block hash missing from the index")
        parent = block.header
