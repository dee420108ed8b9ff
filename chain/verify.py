"""Offline audit of a node's store (`node.py verify --data-dir DIR`): every stored block
is re-checked — hash links, re-execution against its parent's state (so every root is
recomputed), commit certificates and their finality proofs when present
(chain.certificate.verify_finality: a certificate alone does not make a block final), each
by the bookkeeper set of its own height (the schedule of the head, chain/epochs.py, which
the re-execution itself checks), the transaction index and the head pointer.

A store whose base is above genesis (pruned, or joined by a snapshot: chain/store.py) is
checked from its base block: that block must be final under the set that the stored
schedule walk from the genesis set proves for its height (chain/epochwalk.py: the steps
below the base are kept), and match its body, and the whole
state under its state root is walked node by node as a joining node checks a snapshot;
every block above it is re-executed as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from chain.certificate import verify_finality
from chain.chain import Chain
from chain.epochs import epoch_at
from chain.epochwalk import ScheduleWalk, walk_steps
from chain.errors import LedgerError
from chain.snapshot import check_base_block, check_state


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
    base = store.base_height()
    parent = store.block(0).header
    epochs = chain.epochs()
    if base > 0:
        try:
            parent = store.block(base).header
            distance = chain.activation_distance()
            walk = ScheduleWalk(chain.genesis.chain_id, epochs[0], distance)
            for step in walk_steps(chain, base, distance):
                walk.add(step)
            certifiers = walk.certifiers(base)
            check_base_block(store.block(base), chain_id=chain.genesis.chain_id,
                             bookkeepers=list(certifiers.keys), t=certifiers.t)
            check_state(store, parent.state_root)
        except LedgerError as exc:
            yield Finding(base, f"base block or its state: {exc}")
            return
    for height in range(base + 1, head + 1):
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
            certifiers = epoch_at(epochs, height)
            try:
                verify_finality(block.certificate[0], chain_id=chain.genesis.chain_id, height=height,
                                block_hash=block.hash, bookkeepers=list(certifiers.keys), t=certifiers.t)
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
