"""State snapshots (issue 16, "Joining without replaying from genesis"): the state trie at
one final height cut into chunks, and the restore that checks each chunk against the state
root of a certified header and gives back the trie's nodes, ready to be stored.

A snapshot lists every stored node of the state trie under `root` in breadth-first order
(children in slot order; the hashes inside an embedded child where it sits) and cuts the
list into chunks: a chunk ends with the first node that brings it to CHUNK_BYTES or more,
the last one where the walk ends. The cut depends on the root alone, so every honest node
makes byte-identical chunks and a joining node may take each chunk from another peer.

The check trusts no sender: `StateRestore` replays the walk from the root, so the next node
of a chunk must hash to the next hash the walk expects (the root first, then the children
of the nodes checked before it), and the chunk must end where the cut rule ends it. A node
that passes is authentic (an authentic node refers to its hash), so it may be written at
once; a chunk that fails raises BadChunk with its reason, and nothing of it is kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from enum import Enum

import rlp
from rlp.codec import decode_raw
from rlp.sedes import big_endian_int

from chain.certificate import verify_finality
from chain.errors import InvalidBlock, LedgerError
from chain.execution import ordered_trie_root
from chain.rlpdecode import RlpDecodeError, decode_strict
from chain.state import NodeOverlay, NodeSource
from chain.triebuild import BLANK_ROOT, child_hashes
from chain.types import Block, hash32
from crypto import Hash32, keccak256

# the walk and cut rule above; a new rule gets a new number (2: the schedule walk's parts)
SNAPSHOT_FORMAT = 2
# Target bytes of one chunk, part of the format (every node must cut alike): ~800 nodes,
# checked in a few ms on the node's loop, and far below a p2p frame.
CHUNK_BYTES = 64 * 1024
# Schedule steps (chain/epochwalk.py, ~1-4 KiB each) in one walk part: parts stay far below
# a p2p frame while a walk of 10,000 blocks (1,000 steps at activation_distance 10) takes 63.
WALK_STEPS_PER_PART = 16


class ChunkFault(Enum):
    """Why a served chunk was refused (metric labels come from these values)."""

    UNDECODABLE = "undecodable"  # not an rlp list of byte strings
    TOO_LARGE = "too-large"  # more bytes than the receiver's chunk_bytes_max
    WRONG_NODE = "wrong-node"  # a node is not the one the walk expects next
    EARLY_END = "early-end"  # ends before the cut rule ends it
    LATE_END = "late-end"  # goes on past the cut (or past the end of the walk)
    BAD_WALK = "bad-walk"  # a schedule step that does not extend the known schedule


class BadChunk(LedgerError):
    def __init__(self, reason: ChunkFault, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class MissingNode(LedgerError):
    """A node the walk needs is not in the store (an incomplete or damaged state)."""

    def __init__(self, node_hash: bytes) -> None:
        super().__init__(f"trie node 0x{node_hash.hex()} missing from the store")
        self.node_hash = node_hash


class SnapshotManifest(rlp.Serializable):
    """What a node offers of one snapshot; stored beside its chunks and sent in offers.
    Only the state root is ever trusted, and only once a certified header carries it.
    Parts: 0 the block, 1..chunks the state's chunks, chunks+1..chunks+walk the steps of
    the bookkeeper schedule from genesis up to the block's height (chain/epochwalk.py)."""

    fields = [
        ("format", big_endian_int),
        ("height", big_endian_int),
        ("block_hash", hash32),
        ("state_root", hash32),
        ("chunks", big_endian_int),
        ("nodes", big_endian_int),
        ("bytes", big_endian_int),
        ("walk", big_endian_int),
    ]


def walk_parts(steps: list[bytes]) -> list[bytes]:
    """The walk parts of a snapshot: its encoded schedule steps, WALK_STEPS_PER_PART each."""
    return [rlp.encode(steps[i:i + WALK_STEPS_PER_PART]) for i in range(0, len(steps), WALK_STEPS_PER_PART)]


def decode_walk_part(data: bytes) -> list[bytes]:
    """The encoded steps of a walk part; BadChunk(UNDECODABLE) unless a list of at most
    WALK_STEPS_PER_PART byte strings."""
    steps = decode_chunk(data)
    if not steps or len(steps) > WALK_STEPS_PER_PART:
        raise BadChunk(ChunkFault.UNDECODABLE, f"{len(steps)} steps in a walk part, 1..{WALK_STEPS_PER_PART}")
    return steps


def encode_chunk(nodes: list[bytes]) -> bytes:
    return rlp.encode(nodes)


def decode_chunk(data: bytes) -> list[bytes]:
    """The nodes of a chunk as it arrived; BadChunk(UNDECODABLE) unless an rlp list of byte
    strings."""
    try:
        item = decode_strict(data)
    except RlpDecodeError as exc:
        raise BadChunk(ChunkFault.UNDECODABLE, str(exc)) from exc
    if not isinstance(item, list) or not all(isinstance(node, bytes) for node in item):
        raise BadChunk(ChunkFault.UNDECODABLE, "not a list of byte strings")
    return item  # type: ignore[return-value]  # checked just above


class _Walk:
    """The breadth-first order of the trie under `root`: the hashes still to visit."""

    def __init__(self, root: Hash32) -> None:
        self.pending: deque[bytes] = deque() if root == BLANK_ROOT else deque([root])

    def visit(self, raw: bytes) -> None:
        self.pending.extend(child_hashes(decode_raw(raw, True, False)[0]))


def snapshot_chunks(source: NodeSource, root: Hash32) -> Iterator[list[bytes]]:
    """The chunks of the state under `root`, read from `source` one node at a time (so a
    caller may yield the store between chunks). Raises MissingNode."""
    walk = _Walk(root)
    chunk: list[bytes] = []
    size = 0
    while walk.pending:
        node_hash = walk.pending.popleft()
        raw = source.node(node_hash)
        if raw is None:
            raise MissingNode(node_hash)
        walk.visit(raw)
        chunk.append(raw)
        size += len(raw)
        if size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


class StateRestore:
    """Checks the chunks of the snapshot of `root`, in order (module docstring)."""

    def __init__(self, root: Hash32, chunk_bytes_max: int) -> None:
        self.root = root
        self.chunk_bytes_max = chunk_bytes_max
        self._walk = _Walk(root)
        self.chunks = 0
        self.nodes = 0
        self.bytes = 0

    @property
    def done(self) -> bool:
        """Every node of the state is checked: the restore is complete."""
        return not self._walk.pending

    def add(self, data: bytes) -> dict[bytes, bytes]:
        """Check the next chunk (as it arrived); its nodes by hash. Raises BadChunk and
        keeps nothing of a bad chunk."""
        if len(data) > self.chunk_bytes_max:
            raise BadChunk(ChunkFault.TOO_LARGE, f"{len(data)} bytes, at most {self.chunk_bytes_max}")
        nodes = decode_chunk(data)
        pending = self._walk.pending
        # Checked on a copy of the walk's queue: a bad chunk must leave the walk as it was.
        walk = _Walk(BLANK_ROOT)
        walk.pending = deque(pending)
        checked: dict[bytes, bytes] = {}
        size = 0
        for position, raw in enumerate(nodes):
            if size >= CHUNK_BYTES or not walk.pending:
                raise BadChunk(ChunkFault.LATE_END, f"node {position} of {len(nodes)} is past the chunk's end")
            expected = walk.pending.popleft()
            node_hash = keccak256(raw)
            if node_hash != expected:
                raise BadChunk(ChunkFault.WRONG_NODE, f"node {position} hashes to 0x{node_hash.hex()[:16]}, "
                                                      f"the walk expects 0x{expected.hex()[:16]}")
            walk.visit(raw)  # an authentic node: it decodes
            checked[node_hash] = raw
            size += len(raw)
        if size < CHUNK_BYTES and walk.pending:
            raise BadChunk(ChunkFault.EARLY_END, f"{len(nodes)} nodes, {size} bytes: the cut is at {CHUNK_BYTES}")
        self._walk = walk
        self.chunks += 1
        self.nodes += len(nodes)
        self.bytes += size
        return checked


def check_state(source: NodeSource, root: Hash32) -> StateRestore:
    """Walk the whole state under `root` and check every node's hash, as a joining node
    would (`node.py verify` of a store that starts at a snapshot); the finished restore
    holds the totals. Raises MissingNode, or BadChunk for a node whose bytes do not hash
    to its key."""
    restore = StateRestore(root, chunk_bytes_max=1 << 62)
    for chunk in snapshot_chunks(source, root):
        restore.add(encode_chunk(chunk))
    assert restore.done, "the walk ends where the restore ends"
    return restore


def check_base_block(block: Block, *, chain_id: int, bookkeepers: list[bytes], t: int) -> None:
    """The block a snapshot's state belongs to: final (its certificate and finality proof
    verify, so its header's state root is the chain's) and its body the one its header
    names. Raises InvalidCertificate or InvalidBlock."""
    if len(block.certificate) != 1:
        raise InvalidBlock("a snapshot's block carries its certificate")
    verify_finality(block.certificate[0], chain_id=chain_id, height=block.number, block_hash=block.hash,
                    bookkeepers=bookkeepers, t=t)
    tx_root = ordered_trie_root(NodeOverlay(None), [rlp.encode(tx) for tx in block.transactions])
    if tx_root != block.header.transaction_root:
        raise InvalidBlock("transaction_root", tx_root, block.header.transaction_root)
