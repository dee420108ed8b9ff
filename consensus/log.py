"""The consensus log: the one entry a replica accepted beyond its final head.

Pipelining is off (the primary proposes h+1 only once h is final at the primary) and a
replica only accepts a block that executes on its final head, so a replica's log holds at
most one entry, at final_height+1: the block it voted for (a follower) or proposed (a
primary), the primary's signed vote and, once the replica holds all t+1 votes of `view`,
the full certificate: the entry is then *committed* in the paper's sense and travels in
VIEW-CHANGE. Finalization truncates the log; an entry that a view change replaced is
dropped, which is how a committed-but-not-final suffix is rolled back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import rlp

from chain import Block, DecodeError, decode
from crypto import Hash32


@dataclass(frozen=True)
class Entry:
    view: int
    height: int
    block_raw: bytes
    prepare_vote: bytes  # the primary of `view`'s signature on commit_message(...)
    certificate: bytes  # rlp CommitCertificate of `view` once held, else b""
    block: Block = field(compare=False, repr=False)

    @classmethod
    def create(cls, view: int, block_raw: bytes, prepare_vote: bytes,
               certificate: bytes = b"", *, block: Block | None = None) -> Entry:
        """`block` is `block_raw` decoded when the caller has it (the wire decoder did it:
        big blocks are slow to decode). Raises DecodeError when `block_raw` is not a block."""
        if block is None:
            block = decode(block_raw, Block)
        return cls(view, block.number, block_raw, prepare_vote, certificate, block)

    def with_certificate(self, certificate: bytes) -> Entry:
        return Entry(self.view, self.height, self.block_raw, self.prepare_vote, certificate,
                     self.block)

    @property
    def block_hash(self) -> Hash32:
        return self.block.hash

    def to_bytes(self) -> bytes:
        encoded: bytes = rlp.encode([self.view, self.height, self.block_raw, self.prepare_vote,
                                     self.certificate])
        return encoded

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        try:
            view, height, block_raw, vote, certificate = rlp.decode(data)
            entry = cls.create(rlp.sedes.big_endian_int.deserialize(view), block_raw, vote,
                               certificate)
        except (rlp.exceptions.DecodingError, rlp.exceptions.DeserializationError,
                ValueError) as exc:
            raise DecodeError(f"not a consensus log entry: {exc}") from exc
        if entry.height != rlp.sedes.big_endian_int.deserialize(height):
            raise DecodeError("log entry height does not match its block")
        return entry
