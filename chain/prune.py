"""Collecting old states: mark and sweep from the kept roots (docs/consensus.md "Joining by
snapshot, and pruning").

Every state, transaction and receipt trie lives in one content-addressed node table
(chain/store.py), and a new block's trie shares every unchanged subtree with its parent's.
Once pruning has raised the store's base, the states below it are garbage, but a node of
an old state may still be part of a kept one. What is kept: block 0's tries, the tries of
every block from the base to the head, and the state of every snapshot on disk.

Mark and sweep, not reference counting: counting would add a read-modify-write per child
of every node every block writes, on the commit path of every node (also archives, which
never prune), and a count gone wrong by one silently deletes a live node or keeps a dead
one for ever. A mark walks the kept tries (a subtree shared by several roots once), off
the loop, only when the base moved; the sweep deletes what it did not reach. What a block
writes while the mark runs cannot have been marked (its roots came later), so the store
records those writes (`begin_collection`) and the sweep spares them; nothing a new block
reaches is lost: a node it reaches is new (recorded) or reached from its parent's state,
which is kept (marked, or itself new). Cost: the mark reads each kept node once and holds
32 bytes per node in memory (4 MiB for the 138,529 nodes of the 100,000-account state);
the sweep reads every stored key once, in bounded batches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from rlp.codec import decode_raw

from chain.state import NodeSource
from chain.store import ChainStore
from chain.triebuild import BLANK_ROOT, child_hashes
from crypto import Hash32


class Stopped(Exception):
    """The mark was asked to stop (the node stops)."""


def kept_roots(store: ChainStore, head: int, snapshot_roots: Iterable[Hash32]) -> list[Hash32]:
    """The roots whose tries stay: block 0's, every block's from the base to `head`, and the
    snapshots' states."""
    roots: list[Hash32] = list(snapshot_roots)
    for height in [0, *range(max(store.base_height(), 1), head + 1)]:
        header = store.block(height).header
        roots += [header.state_root, header.transaction_root, header.receipt_root]
    return roots


def mark(source: NodeSource, roots: Iterable[Hash32], stop: threading.Event | None = None) -> set[bytes]:
    """Every stored node of the tries under `roots`. A node missing from the store is passed
    over (a snapshot-joined base block's transaction and receipt tries were never held)."""
    marked: set[bytes] = set()
    stack = [root for root in roots if root != BLANK_ROOT]
    while stack:
        node_hash = stack.pop()
        if node_hash in marked:
            continue  # shared with a root walked before: its subtree is marked
        if stop is not None and stop.is_set():
            raise Stopped
        raw = source.node(node_hash)
        if raw is None:
            continue
        marked.add(node_hash)
        stack.extend(child_hashes(decode_raw(raw, True, False)[0]))
    return marked


def sweep_batch(store: ChainStore, marked: set[bytes], after: bytes, count_max: int) -> tuple[list[bytes], bytes]:
    """Delete the unmarked nodes among the next `count_max` stored keys past `after`, sparing
    those written since the collection began; (deleted, the last key looked at: b"" when
    the table is done)."""
    keys = store.node_hashes_after(after, count_max)
    if not keys:
        return [], b""
    spared = store.written_during_collection()
    dead = [key for key in keys if key not in marked and key not in spared]
    if dead:
        store.delete_nodes(dead)
    return dead, keys[-1]
