"""Block sync, sans-IO: fetch missing final blocks from any peer and check each one.

Between any nodes, bookkeepers or observers, so peers are opaque ids (bytes) that the node
maps to connections. A node announces its final head (SyncStatus); one that learns a peer
is ahead asks it for blocks (SyncRequest), and applies the SyncResponse block by block:
the number follows the head, the parent hash links, the certificate and its finality
proof verify (chain.certificate.verify_finality: a certified block alone may be one the
group never finalized) by the bookkeeper set of that height (`set_of`, chain/epochs.py: a
signature of a bookkeeper removed before that height does not count), the application
executes it, and only then `app.finalize` (which writes the consensus record the block
makes true in the block's own store transaction, runtime/ledger_app.py). So
sync trusts no peer; a peer that serves a block failing any check is reported
(`SyncRejected`, the node logs and counts it) and not asked again for
`bad_peer_penalty_ms`. Everything is bounded: blocks and bytes per response, one
outstanding request at a time, a deadline on it, and the number of peers remembered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from chain import Block, DecodeError, InvalidCertificate, LedgerError
from chain.certificate import verify_finality
from chain.epochs import Epoch
from consensus.app import Application
from consensus.errors import DecodeReason, InvalidMessage
from consensus.messages import (
    BLOB_BYTES_MAX,
    HEIGHT_MAX,
    UINT_MAX,
    cached_decode,
    check_block,
)

PeerId = bytes
# Blocks in one SyncResponse on the wire; what a node asks for is far less
# (blocks_per_response_max).
RESPONSE_BLOCKS_MAX = 256


@dataclass(frozen=True)
class SyncConfig:
    # Small enough that applying one response (re-executing its blocks) keeps the node's
    # loop, and so its RPC, responsive during a catch-up.
    blocks_per_response_max: int = 8
    # Bytes of blocks per response (one block is always sent, however large): 3 MiB leaves
    # room for the message envelope inside the 4 MiB default p2p frame.
    response_bytes_max: int = 3 * 1024 * 1024
    request_timeout_ms: int = 2_000  # a request unanswered this long goes to another peer
    peers_max: int = 256  # peers whose announced heights are remembered
    # A peer that served a bad block is not asked again for this long (a restarted honest
    # node is forgiven; a Byzantine one cannot keep the node busy with bad answers).
    bad_peer_penalty_ms: int = 60_000

    def __post_init__(self) -> None:
        if not 1 <= self.blocks_per_response_max <= RESPONSE_BLOCKS_MAX:
            # More would make every peer's decoder refuse this node's answers.
            raise ValueError(f"blocks_per_response_max must be in 1..{RESPONSE_BLOCKS_MAX}")


@dataclass(frozen=True)
class SyncStatus:
    TYPE: ClassVar[str] = "sync_status"
    height: int
    block_hash: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, "height": self.height, "block_hash": self.block_hash}


@dataclass(frozen=True)
class SyncRequest:
    TYPE: ClassVar[str] = "sync_request"
    from_height: int
    count: int

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, "from_height": self.from_height, "count": self.count}


@dataclass(frozen=True)
class SyncResponse:
    """Consecutive final blocks (rlp, certificate inside) from `from_height`."""

    TYPE: ClassVar[str] = "sync_response"
    from_height: int
    blocks: tuple[bytes, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, "from_height": self.from_height, "blocks": list(self.blocks)}

    def decoded_blocks(self) -> tuple[Block, ...]:
        """The blocks decoded once (sync_message_from_wire did it). Raises DecodeError on
        a response that skipped the decoder."""
        return tuple(cached_decode(self, ("blocks", i), raw, Block)
                     for i, raw in enumerate(self.blocks))


SyncMessage = SyncStatus | SyncRequest | SyncResponse


@dataclass(frozen=True)
class SyncSend:
    peer: PeerId
    message: SyncMessage


class BadBlock(Enum):
    """Why a served block was refused (metric labels come from these values)."""

    UNDECODABLE = "undecodable"
    NOT_NEXT = "not-next"  # its number is not the next height
    CONFLICT = "conflict"  # another block than ours at a height final here
    PARENT = "parent"  # does not link to the final head
    NOT_FINAL = "not-final"  # no valid certificate with its finality proof
    EXECUTION = "execution"  # the application refuses it


@dataclass(frozen=True)
class SyncRejected:
    """`peer` served a bad block (`reason`, `detail`): log, count, and it is penalized."""

    peer: PeerId
    height: int
    reason: BadBlock
    detail: str


SyncAction = SyncSend | SyncRejected


def sync_message_from_wire(obj: object, n: int) -> SyncMessage:
    """Decode strictly for sets of at most n bookkeepers (the certificates inside blocks
    name voters; blocks of several epochs may come in one response, each checked against
    its own set when applied); raise InvalidMessage on anything malformed or out of range."""
    if not isinstance(obj, dict):
        raise InvalidMessage(DecodeReason.NOT_A_MAP, type(obj).__name__)
    kind = obj.get("type")
    fields = {"sync_status": {"type", "height", "block_hash"},
              "sync_request": {"type", "from_height", "count"},
              "sync_response": {"type", "from_height", "blocks"}}.get(
        kind if isinstance(kind, str) else "")
    if fields is None:
        raise InvalidMessage(DecodeReason.UNKNOWN_TYPE, repr(kind)[:40])
    if set(obj) != fields:
        raise InvalidMessage(DecodeReason.BAD_FIELDS, str(kind))
    if kind == "sync_status":
        block_hash = obj["block_hash"]
        if not isinstance(block_hash, bytes) or len(block_hash) != 32:
            raise InvalidMessage(DecodeReason.BAD_LENGTH, "block_hash")
        return SyncStatus(_uint(obj, "height", HEIGHT_MAX), block_hash)
    if kind == "sync_request":
        return SyncRequest(_uint(obj, "from_height", HEIGHT_MAX), _uint(obj, "count", UINT_MAX))
    blocks = obj["blocks"]
    if not isinstance(blocks, list | tuple) or not all(isinstance(raw, bytes) for raw in blocks):
        raise InvalidMessage(DecodeReason.BAD_TYPE, "blocks is not a list of bytes")
    if len(blocks) > RESPONSE_BLOCKS_MAX or any(len(raw) > BLOB_BYTES_MAX for raw in blocks):
        raise InvalidMessage(DecodeReason.BAD_LENGTH, f"{len(blocks)} blocks")
    response = SyncResponse(_uint(obj, "from_height", HEIGHT_MAX), tuple(blocks))
    try:
        decoded = response.decoded_blocks()
    except DecodeError as exc:
        raise InvalidMessage(DecodeReason.BAD_RECORD, str(exc)[:120]) from exc
    for block in decoded:
        check_block(block, n, exact=False)
        if len(block.certificate) != 1:
            raise InvalidMessage(DecodeReason.BAD_RECORD, "a final block carries one certificate")
    return response


def _uint(obj: dict[Any, Any], name: str, maximum: int) -> int:
    value = obj[name]
    if type(value) is not int:
        raise InvalidMessage(DecodeReason.BAD_TYPE, f"{name} is not an int")
    if not 0 <= value <= maximum:
        raise InvalidMessage(DecodeReason.OUT_OF_RANGE, f"{name} {value} not in 0..{maximum}")
    return value


class BlockSync:
    def __init__(self, app: Application, *, chain_id: int, set_of: Callable[[int], Epoch],
                 config: SyncConfig | None = None) -> None:
        """`set_of(height)`: the bookkeepers who certify `height` (asked for the next height
        only, which the final head's state knows)."""
        self._app = app
        self._chain_id = chain_id
        self._set_of = set_of
        self._config = config or SyncConfig()
        self._peer_heights: dict[PeerId, int] = {}
        self._penalized: dict[PeerId, int] = {}  # peer -> until (ms), at most peers_max
        self._outstanding: tuple[PeerId, int] | None = None  # (peer, deadline)
        self.blocks_applied = 0

    def status(self) -> SyncStatus:
        return SyncStatus(self._app.final_height(), self._app.final_hash())

    def on_message(self, peer: PeerId, message: SyncMessage, now_ms: int) -> list[SyncAction]:
        if isinstance(message, SyncStatus):
            return self.request(peer, message.height, now_ms)
        if isinstance(message, SyncRequest):
            return [SyncSend(peer, self._respond(message))]
        return self._on_response(peer, message, now_ms)

    def expects(self, peer: PeerId) -> bool:
        """Whether a response from `peer` would be read: it has this node's one request."""
        return self._outstanding is not None and self._outstanding[0] == peer

    def penalized(self, peer: PeerId, now_ms: int) -> bool:
        """Whether `peer` served a bad block within the last `bad_peer_penalty_ms`."""
        return self._penalized.get(peer, -1) > now_ms

    def request(self, peer: PeerId, height: int, now_ms: int) -> list[SyncAction]:
        """`peer` holds final blocks up to `height`: fetch what we miss."""
        if self.penalized(peer, now_ms):
            return []
        if height > self._peer_heights.get(peer, -1):
            if peer not in self._peer_heights and \
                    len(self._peer_heights) >= self._config.peers_max:
                self._peer_heights.pop(next(iter(self._peer_heights)))
            self._peer_heights[peer] = height
        return self._next_request(now_ms)

    def on_tick(self, now_ms: int) -> list[SyncAction]:
        if self._outstanding is not None and now_ms >= self._outstanding[1]:
            # That peer did not answer in time: forget its claim, ask another.
            self._peer_heights.pop(self._outstanding[0], None)
            self._outstanding = None
        return self._next_request(now_ms)

    def next_deadline(self) -> int | None:
        return self._outstanding[1] if self._outstanding is not None else None

    def _next_request(self, now_ms: int) -> list[SyncAction]:
        if self._outstanding is not None:
            return []
        final = self._app.final_height()
        ahead = [(height, peer) for peer, height in self._peer_heights.items()
                 if height > final]
        if not ahead:
            return []
        height, peer = max(ahead)
        count = min(height - final, self._config.blocks_per_response_max)
        self._outstanding = (peer, now_ms + self._config.request_timeout_ms)
        return [SyncSend(peer, SyncRequest(final + 1, count))]

    def _respond(self, request: SyncRequest) -> SyncResponse:
        blocks: list[bytes] = []
        size = 0
        last = min(request.from_height + min(request.count,
                                             self._config.blocks_per_response_max),
                   self._app.final_height() + 1)
        for height in range(max(request.from_height, 1), last):
            block = self._app.final_block(height)
            if block is None:
                break  # below this node's base (pruned, or joined by snapshot): ask another peer
            raw = block.encoded()
            if size + len(raw) > self._config.response_bytes_max and blocks:
                break
            blocks.append(raw)
            size += len(raw)
        return SyncResponse(max(request.from_height, 1), tuple(blocks))

    def _on_response(self, peer: PeerId, response: SyncResponse,
                     now_ms: int) -> list[SyncAction]:
        if not self.expects(peer):
            return []  # unsolicited: ignore (the node drops it undecoded)
        self._outstanding = None
        actions: list[SyncAction] = []
        try:
            blocks = response.decoded_blocks()
        except DecodeError as exc:  # a response that skipped sync_message_from_wire
            blocks = ()
            actions.append(SyncRejected(peer, response.from_height, BadBlock.UNDECODABLE, str(exc)))
            self._penalize(peer, now_ms)
        for height, block in enumerate(blocks, start=response.from_height):
            refused = self._apply(block, height)
            if refused is not None:
                actions.append(SyncRejected(peer, height, *refused))
                self._penalize(peer, now_ms)
                break
        if self._peer_heights.get(peer, -1) > self._app.final_height() and \
                not response.blocks:
            self._peer_heights.pop(peer, None)  # claimed more than it serves
        return actions + self._next_request(now_ms)

    def _penalize(self, peer: PeerId, now_ms: int) -> None:
        self._peer_heights.pop(peer, None)
        self._penalized = {p: until for p, until in self._penalized.items() if until > now_ms}
        if len(self._penalized) >= self._config.peers_max:
            self._penalized.pop(next(iter(self._penalized)))
        self._penalized[peer] = now_ms + self._config.bad_peer_penalty_ms

    def _apply(self, block: Block, height: int) -> tuple[BadBlock, str] | None:
        """Finalize the block served for `height` on the head; the reason (and nothing
        changed) when it is wrong. A block we already hold is skipped: our head may have
        moved (a FINAL) while the request was out."""
        final = self._app.final_height()
        if block.number != height or block.number > final + 1:
            return BadBlock.NOT_NEXT, f"block {block.number} served for {height}, head {final}"
        if block.number <= final:
            ours = self._app.final_block(block.number)
            if ours is None or ours.hash != block.hash:
                return BadBlock.CONFLICT, f"block {block.number} is not ours"
            return None
        if block.header.parent_hash != self._app.final_hash():
            return BadBlock.PARENT, f"block {block.number} does not link to our head"
        if len(block.certificate) != 1:
            return BadBlock.NOT_FINAL, "no certificate"
        certifiers = self._set_of(block.number)
        try:
            verify_finality(block.certificate[0], chain_id=self._chain_id,
                            height=block.number, block_hash=block.hash,
                            bookkeepers=list(certifiers.keys), t=certifiers.t)
        except InvalidCertificate as exc:
            return BadBlock.NOT_FINAL, str(exc)
        try:
            self._app.check(block.with_certificate(None))
        except LedgerError as exc:
            return BadBlock.EXECUTION, str(exc)
        self._app.finalize(block)
        self.blocks_applied += 1
        return None
