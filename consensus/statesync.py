"""State sync, sans-IO: a joining node fetches a state snapshot (chain/snapshot.py) from its
peers instead of replaying the chain from genesis, then follows by block sync.

Any node serves the snapshots it made (the node answers `snapshot_offers_request` and
`snapshot_part_request` from its files, runtime/snapshots.py). A joining node
(`node.py start --sync snapshot` on a fresh store) runs `StateSync`:
  1. discover: ask every peer for its offers (SnapshotManifest: height, block hash, state
     root, chunks), collect them for `offer_wait_ms`, choose the newest;
  2. part 0 of that snapshot is its block with the commit certificate: it must be the
     offered one and match its body; then the walk parts (chunks+1..chunks+walk: the
     schedule steps from genesis, chain/epochwalk.py) teach it the bookkeeper set of the
     block's height, each step certified by the set the steps before it proved, and the
     block must be final under that set (chain.certificate.verify_finality); from now on
     its header's state root is the only thing trusted;
  3. parts 1..chunks are the state's chunks, each checked by chain.snapshot.StateRestore against
     that root and handed back to be stored at once; a peer that serves a bad part is
     refused (`PartRefused`: the node logs, counts and disconnects it), is not asked again
     during this restore, and the part is asked of the next peer offering the snapshot;
     a part unanswered for `request_timeout_ms` too; parts are asked of the holders in
     turn, so the load spreads over them;
  4. once the walk is complete, `SnapshotRestored` carries the block to install.
With no usable offer for `discover_ms_max` (no peer makes snapshots, or every offer was
bad), `SnapshotAbandoned`: the node replays from genesis by block sync, as without it.
One request is outstanding at a time, every message and count is bounded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import rlp

from chain import Block, DecodeError, InvalidCertificate, LedgerError, decode
from chain.epochs import Epoch
from chain.epochwalk import BadWalk, ScheduleWalk, step_heights
from chain.snapshot import (
    SNAPSHOT_FORMAT,
    WALK_STEPS_PER_PART,
    BadChunk,
    ChunkFault,
    SnapshotManifest,
    StateRestore,
    check_base_block,
    decode_walk_part,
)
from consensus.errors import DecodeReason, InvalidMessage
from consensus.messages import BLOB_BYTES_MAX, HEIGHT_MAX
from consensus.sync import PeerId

OFFERS_MAX = 16  # manifests in one snapshot_offers message
MANIFEST_BYTES_MAX = 256  # one rlp SnapshotManifest is ~110 bytes
BLOCK_PART = 0  # part 0 of a snapshot is its certified block; then chunks, then walk parts
PART_MAX = 1 << 32
STATESYNC_TYPES = ("snapshot_offers_request", "snapshot_offers", "snapshot_part_request", "snapshot_part")


@dataclass(frozen=True)
class SnapshotConfig:
    # Make a snapshot of the state every this many blocks (at heights divisible by it) and
    # offer it to joining nodes; 0 makes none.
    interval_blocks: int = 0
    kept: int = field(default=2, metadata={"min": 1})  # newest snapshots kept on disk and offered
    # Keep the bodies of this many blocks below the head; older ones are pruned down to the
    # newest snapshot at or below head - keep_blocks, whose block and state stay (the store's
    # base). 0 keeps every block (an archive node). Needs interval_blocks.
    keep_blocks: int = 0
    # bodies deleted in one write while pruning (a long write would stall the loop)
    prune_blocks_per_write_max: int = field(default=64, metadata={"min": 1})
    # With keep_blocks: also delete the trie nodes of the states below the base, by mark and
    # sweep from the kept roots (chain/prune.py) after each rise of the base; false keeps them.
    prune_states: bool = True
    # nodes looked at per status tick by the sweep (each tick one write of the dead among them)
    prune_nodes_per_write_max: int = field(default=4_096, metadata={"min": 1})
    # Joining (sync mode "snapshot"): offers are collected this long before the newest is chosen.
    offer_wait_ms: int = field(default=2_000, metadata={"min": 1})
    # with no usable offer this long, the node replays the chain from genesis instead
    discover_ms_max: int = field(default=60_000, metadata={"min": 1})
    # a part unanswered this long is asked of the next peer
    request_timeout_ms: int = field(default=10_000, metadata={"min": 1})
    # A larger part is refused: chunks are cut at 64 KiB plus one trie node; part 0 is a
    # block (genesis [limits] block_bytes_max); both must fit in a p2p frame.
    part_bytes_max: int = field(default=3 << 20, metadata={"min": 1 << 18})
    chunks_max: int = field(default=262_144, metadata={"min": 1})  # offers of more chunks (16 GiB) are ignored
    peers_max: int = field(default=256, metadata={"min": 1})  # peers whose offers are remembered
    # Serving: bytes of snapshot parts one peer may draw per second, and at once. A joiner
    # asks one part at a time of its holders in turn (~2 chunks/s per holder in the 100,000-
    # account benchmark); a peer asking faster is answered nothing (it asks another holder
    # after its request_timeout_ms). The burst holds the largest part (a block).
    serve_bytes_per_s_max: int = field(default=4 << 20, metadata={"min": 1})
    serve_bytes_burst_max: int = field(default=8 << 20, metadata={"min": 1})

    def __post_init__(self) -> None:
        if self.keep_blocks and not self.interval_blocks:
            raise ValueError("keep_blocks prunes down to a snapshot height: set interval_blocks too")
        if self.keep_blocks and self.keep_blocks < self.interval_blocks:
            # the newest snapshot must lie keep_blocks below the head before anything goes
            raise ValueError("keep_blocks must be 0 or at least interval_blocks")
        if self.serve_bytes_burst_max < self.part_bytes_max:
            raise ValueError("serve_bytes_burst_max must hold a part of part_bytes_max")


# messages -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OffersRequest:
    TYPE: ClassVar[str] = "snapshot_offers_request"

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE}


@dataclass(frozen=True)
class Offers:
    TYPE: ClassVar[str] = "snapshot_offers"
    manifests: tuple[SnapshotManifest, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, "offers": [rlp.encode(m) for m in self.manifests]}


@dataclass(frozen=True)
class PartRequest:
    TYPE: ClassVar[str] = "snapshot_part_request"
    height: int
    part: int

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, "height": self.height, "part": self.part}


@dataclass(frozen=True)
class Part:
    """Part `part` of the snapshot at `height`; empty `data`: not held (any more)."""

    TYPE: ClassVar[str] = "snapshot_part"
    height: int
    part: int
    data: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, "height": self.height, "part": self.part, "data": self.data}


StateSyncMessage = OffersRequest | Offers | PartRequest | Part


def statesync_message_from_wire(obj: object) -> StateSyncMessage:
    """Decode strictly; raise InvalidMessage on anything malformed or out of range."""
    if not isinstance(obj, dict):
        raise InvalidMessage(DecodeReason.NOT_A_MAP, type(obj).__name__)
    kind = obj.get("type")
    fields = {"snapshot_offers_request": {"type"}, "snapshot_offers": {"type", "offers"},
              "snapshot_part_request": {"type", "height", "part"},
              "snapshot_part": {"type", "height", "part", "data"}}.get(kind if isinstance(kind, str) else "")
    if fields is None:
        raise InvalidMessage(DecodeReason.UNKNOWN_TYPE, repr(kind)[:40])
    if set(obj) != fields:
        raise InvalidMessage(DecodeReason.BAD_FIELDS, str(kind))
    if kind == "snapshot_offers_request":
        return OffersRequest()
    if kind == "snapshot_offers":
        offers = obj["offers"]
        if not isinstance(offers, list | tuple) or len(offers) > OFFERS_MAX or not all(
                isinstance(raw, bytes) and len(raw) <= MANIFEST_BYTES_MAX for raw in offers):
            raise InvalidMessage(DecodeReason.BAD_LENGTH, "offers")
        try:
            return Offers(tuple(decode(raw, SnapshotManifest) for raw in offers))
        except DecodeError as exc:
            raise InvalidMessage(DecodeReason.BAD_RECORD, str(exc)[:120]) from exc
    height, part = _uint(obj, "height", HEIGHT_MAX), _uint(obj, "part", PART_MAX)
    if kind == "snapshot_part_request":
        return PartRequest(height, part)
    data = obj["data"]
    if not isinstance(data, bytes) or len(data) > BLOB_BYTES_MAX:
        raise InvalidMessage(DecodeReason.BAD_LENGTH, "data")
    return Part(height, part, data)


def _uint(obj: dict[Any, Any], name: str, maximum: int) -> int:
    value = obj[name]
    if type(value) is not int or not 0 <= value <= maximum:
        raise InvalidMessage(DecodeReason.OUT_OF_RANGE, f"{name} is not an int in 0..{maximum}")
    return value


# actions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateSyncSend:
    peer: PeerId
    message: StateSyncMessage


@dataclass(frozen=True)
class PartRefused:
    """`peer` served a bad part (`reason`: a ChunkFault value, or for part 0 "undecodable",
    "not-offered", "not-final", "bad-body"): log, count, disconnect; it is not asked again
    during this restore."""

    peer: PeerId
    height: int
    part: int
    reason: str
    detail: str


@dataclass(frozen=True)
class WalkChecked:
    """Schedule steps of the snapshot, each checked (by height): keep them, to serve the
    walk in this node's own snapshots."""

    steps: dict[int, bytes]


@dataclass(frozen=True)
class NodesChecked:
    """Trie nodes of the snapshot, each checked: store them now."""

    nodes: dict[bytes, bytes]


@dataclass(frozen=True)
class SnapshotRestored:
    """The whole state of `block` is stored: install `block` as head and base."""

    block: Block


@dataclass(frozen=True)
class SnapshotAbandoned:
    """No usable snapshot: replay from genesis by block sync."""

    reason: str


StateSyncAction = StateSyncSend | PartRefused | WalkChecked | NodesChecked | SnapshotRestored | SnapshotAbandoned
_Key = tuple[int, bytes, bytes]  # (height, block hash, state root): one snapshot


@dataclass
class _Fetch:
    manifest: SnapshotManifest
    holders: list[PeerId]  # peers offering it, not refused
    walk: ScheduleWalk
    turn: int = 0  # requests sent: parts are asked of the holders in turn (spreads the load)
    block: Block | None = None
    restore: StateRestore | None = None
    position: int = 0  # in `order`: the next part wanted

    @property
    def order(self) -> list[int]:
        """Parts in the order they are checked: the walk (which proves the set that
        certifies the block), the block, then the chunks (which its state root proves)."""
        chunks, walk = self.manifest.chunks, self.manifest.walk
        return [*range(chunks + 1, chunks + walk + 1), BLOCK_PART, *range(1, chunks + 1)]

    @property
    def part(self) -> int:
        order = self.order
        return order[min(self.position, len(order) - 1)]


class StateSync:
    def __init__(self, *, chain_id: int, genesis_set: Epoch, activation_distance: int, config: SnapshotConfig,
                 now_ms: int) -> None:
        self._chain_id = chain_id
        self._genesis_set = genesis_set  # the trust anchor of the schedule walk
        self._activation_distance = activation_distance
        self._config = config
        self._peers: set[PeerId] = set()
        self._offers: dict[PeerId, tuple[SnapshotManifest, ...]] = {}
        self._refused: set[PeerId] = set()
        self._give_up_at = now_ms + config.discover_ms_max
        self._choose_at: int | None = None  # set by the first offer
        self._fetch: _Fetch | None = None
        self._outstanding: tuple[PeerId, int] | None = None  # (peer, deadline)
        self.finished = False

    # progress, for chain_status -----------------------------------------------------------
    def progress(self) -> dict[str, Any]:
        fetch = self._fetch
        if fetch is None:
            return {"phase": "discover", "offers": sum(len(o) for o in self._offers.values())}
        restore = fetch.restore
        return {"phase": "fetch", "height": fetch.manifest.height, "part": fetch.part,
                "walkParts": fetch.manifest.walk, "walkKnownUntil": fetch.walk.known_until,
                "chunks": fetch.manifest.chunks, "nodes": restore.nodes if restore else 0,
                "bytes": restore.bytes if restore else 0}

    # inputs -------------------------------------------------------------------------------
    def peer_up(self, peer: PeerId, now_ms: int) -> list[StateSyncAction]:
        if self.finished or peer in self._refused or len(self._peers) >= self._config.peers_max:
            return []
        self._peers.add(peer)
        return [StateSyncSend(peer, OffersRequest())]

    def peer_down(self, peer: PeerId) -> None:
        self._peers.discard(peer)

    def on_message(self, peer: PeerId, message: Offers | Part, now_ms: int) -> list[StateSyncAction]:
        if self.finished or peer in self._refused:
            return []
        if isinstance(message, Offers):
            return self._on_offers(peer, message, now_ms)
        return self._on_part(peer, message, now_ms)

    def next_deadline(self) -> int | None:
        if self.finished:
            return None
        deadlines = [self._give_up_at if self._fetch is None else None, self._choose_at,
                     self._outstanding[1] if self._outstanding else None]
        return min((d for d in deadlines if d is not None), default=None)

    def on_tick(self, now_ms: int) -> list[StateSyncAction]:
        if self.finished:
            return []
        if self._outstanding is not None and now_ms >= self._outstanding[1]:
            self._outstanding = None  # slow, not wrong: the next holder in turn is asked
        if self._fetch is None and self._choose_at is not None and now_ms >= self._choose_at:
            self._choose_at = None
            self._fetch = self._choose()
        if self._fetch is None and now_ms >= self._give_up_at:
            self.finished = True
            return [SnapshotAbandoned(f"no usable snapshot offered in {self._config.discover_ms_max} ms "
                                      f"({len(self._peers)} peers, {len(self._refused)} refused)")]
        return self._next_request(now_ms)

    # discovery ----------------------------------------------------------------------------
    def _on_offers(self, peer: PeerId, message: Offers, now_ms: int) -> list[StateSyncAction]:
        usable = tuple(m for m in message.manifests
                       if m.format == SNAPSHOT_FORMAT and 0 < m.height and 0 < m.chunks <= self._config.chunks_max
                       and m.walk == self._walk_parts(m.height))
        if peer not in self._peers:
            return []
        self._offers[peer] = usable
        if usable and self._fetch is None and self._choose_at is None:
            self._choose_at = now_ms + self._config.offer_wait_ms
        if self._fetch is not None and _key(self._fetch.manifest) in map(_key, usable) \
                and peer not in self._fetch.holders:
            self._fetch.holders.append(peer)
        return []

    def _walk_parts(self, height: int) -> int:
        """The walk parts a snapshot at `height` has (its steps follow from the height)."""
        steps = len(step_heights(self._activation_distance, height))
        return -(-steps // WALK_STEPS_PER_PART)

    def _choose(self) -> _Fetch | None:
        """The newest snapshot offered by a peer not refused, and every peer offering it."""
        holders: dict[_Key, list[PeerId]] = {}
        manifests: dict[_Key, SnapshotManifest] = {}
        for peer, offers in self._offers.items():
            if peer in self._refused or peer not in self._peers:
                continue
            for manifest in offers:
                holders.setdefault(_key(manifest), []).append(peer)
                manifests[_key(manifest)] = manifest
        if not holders:
            return None
        best = max(holders, key=lambda key: (key[0], len(holders[key])))
        return _Fetch(manifests[best], holders[best],
                      ScheduleWalk(self._chain_id, self._genesis_set, self._activation_distance))

    def _restart_discovery(self, now_ms: int) -> list[StateSyncAction]:
        """Every holder of the chosen snapshot failed: ask every peer again."""
        self._fetch = None
        self._offers.clear()
        self._give_up_at = max(self._give_up_at, now_ms + self._config.offer_wait_ms)
        return [StateSyncSend(peer, OffersRequest()) for peer in sorted(self._peers - self._refused)]

    # fetching -----------------------------------------------------------------------------
    def _next_request(self, now_ms: int) -> list[StateSyncAction]:
        fetch = self._fetch
        if fetch is None or self._outstanding is not None:
            return []
        holders = [p for p in fetch.holders if p in self._peers and p not in self._refused]
        if not holders:
            return self._restart_discovery(now_ms)
        peer = holders[fetch.turn % len(holders)]
        fetch.turn += 1
        self._outstanding = (peer, now_ms + self._config.request_timeout_ms)
        return [StateSyncSend(peer, PartRequest(fetch.manifest.height, fetch.part))]

    def _on_part(self, peer: PeerId, message: Part, now_ms: int) -> list[StateSyncAction]:
        fetch = self._fetch
        if fetch is None or self._outstanding is None or self._outstanding[0] != peer \
                or (message.height, message.part) != (fetch.manifest.height, fetch.part):
            return []  # unsolicited, or an answer that came after its deadline
        self._outstanding = None
        if not message.data:  # no longer held there (it made a newer one): ask the others
            fetch.holders.remove(peer)
            return self._next_request(now_ms)
        try:
            actions = self._accept(fetch, message.data)
        except LedgerError as exc:
            reason = exc.reason.value if isinstance(exc, BadChunk) else _block_fault(exc)
            self._refused.add(peer)
            fetch.holders.remove(peer)
            refused: list[StateSyncAction] = [PartRefused(peer, message.height, message.part, reason, str(exc))]
            return refused + self._next_request(now_ms)
        if fetch.restore is not None and fetch.restore.done:
            assert fetch.block is not None
            self.finished = True
            return [*actions, SnapshotRestored(fetch.block)]
        return actions + self._next_request(now_ms)

    def _accept(self, fetch: _Fetch, data: bytes) -> list[StateSyncAction]:
        """Check the part `fetch` waits for; raises what is wrong with it (and then keeps
        nothing of it: the next holder is asked the same part)."""
        if len(data) > self._config.part_bytes_max:
            raise BadChunk(ChunkFault.TOO_LARGE, f"{len(data)} bytes, at most {self._config.part_bytes_max}")
        manifest = fetch.manifest
        actions: list[StateSyncAction] = []
        if fetch.part == BLOCK_PART:
            block = decode(data, Block)
            if (block.number, block.hash, block.header.state_root) != _key(manifest):
                raise _NotOffered(f"block {block.number} 0x{block.hash.hex()[:16]} is not the offered one")
            # the walk before it covers its height: the offer was checked for its walk's length
            certifiers = fetch.walk.certifiers(block.number)
            check_base_block(block, chain_id=self._chain_id, bookkeepers=list(certifiers.keys), t=certifiers.t)
            fetch.block = block
            fetch.restore = StateRestore(block.header.state_root, self._config.part_bytes_max)
        elif fetch.part > manifest.chunks:  # a walk part: checked on a copy, kept only whole
            walk = copy.copy(fetch.walk)
            checked: dict[int, bytes] = {}
            for raw in decode_walk_part(data):
                height = walk.known_until
                try:
                    walk.add(raw)
                except (BadWalk, DecodeError) as exc:
                    raise BadChunk(ChunkFault.BAD_WALK, str(exc)) from exc
                checked[height] = raw
            fetch.walk = walk
            actions.append(WalkChecked(checked))
        else:
            assert fetch.restore is not None
            actions.append(NodesChecked(fetch.restore.add(data)))
        fetch.position += 1
        return actions


class _NotOffered(LedgerError):
    """Part 0 is a valid block, but not the one the peer offered."""


def _block_fault(exc: LedgerError) -> str:
    """The reason label of a refused part 0 (the block)."""
    if isinstance(exc, _NotOffered):
        return "not-offered"
    if isinstance(exc, DecodeError):
        return "undecodable"
    if isinstance(exc, InvalidCertificate):
        return "not-final"
    return "bad-body"  # InvalidBlock: no certificate, or a body its header does not name


def _key(manifest: SnapshotManifest) -> _Key:
    return manifest.height, manifest.block_hash, manifest.state_root
