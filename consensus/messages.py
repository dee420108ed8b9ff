"""XPaxos protocol messages: fields, signing and the strict wire codec.

Every message is a frozen dataclass signed by its `sender` (a bookkeeper index) with
Ed25519 over a domain-separated rlp encoding of its type and fields, sender included.
`to_wire()` gives a msgpack-able dict with a "type" key; `message_from_wire(obj, n)` checks
every field of every nested message and record and raises only `InvalidMessage` with a
`DecodeReason`: types, lengths, views and heights below VIEW_MAX / HEIGHT_MAX, every
sender and voter index below n, nested VIEW-CHANGEs, and the certificates inside (decoded
here and kept for the handlers: `decoded_certificate`). Blocks are the exception: they stay
bytes (at most BLOB_BYTES_MAX) until a handler needs one (`decoded_block`, once, then kept),
because decoding a frame-sized block costs seconds and most blocks a peer can send are of
no use to the receiver (consensus/admission.py: who decodes what, and when). Whatever passes
can be indexed and computed with safely, blocks once decoded and checked (`check_block`);
whether it fits the protocol state is the replica's business. Signatures are checked by
the receiver (`verify_signature`), which knows the bookkeepers' keys.

The votes carried by PREPARE, COMMIT and NEW-VIEW are separate signatures on
`chain.certificate.commit_message(...)`: they are what a `CommitCertificate` collects.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import rlp

from chain import Block, CommitCertificate, DecodeError, decode
from chain.epochs import BOOKKEEPERS_MAX
from chain.types import RECORD
from consensus.errors import DecodeReason, InvalidMessage
from crypto import KeyPair, is_valid_signature, keccak256

SIGNING_DOMAIN = b"gridchain/xpaxos\x00"
UINT_MAX = 2**64 - 1
# Views and heights stay far below the uint64 of the wire (msgpack) so that view + 1 and
# height + 1 always encode: a SUSPECT for view 2**64 - 1 once made every replica build a
# VIEW-CHANGE it could not send.
VIEW_MAX = 2**63 - 1
HEIGHT_MAX = 2**63 - 1
BLOB_BYTES_MAX = 16 * 1024 * 1024  # a block on the wire; the p2p frame limit is lower
# A certificate on the wire: t + 1 votes and at most t + 1 finality signatures of at most
# BOOKKEEPERS_MAX bookkeepers, ~70 bytes each, are ~1.2 KB. Bounded before it is decoded: a
# frame-sized one (60,000 junk votes) cost as much to decode as a block.
CERTIFICATE_BYTES_MAX = 4096
SIGNATURE_BYTES = 64
# A FAULT notice (a proof that a bookkeeper misbehaved, consensus/detection.py) holds two
# votes, or one certificate and the accused's VIEW-CHANGE: its bytes are bounded apart from
# the blob limit, so forwarding proofs to every replica stays cheap. A proof whose
# VIEW-CHANGE carries a block this large is kept by its detector and not forwarded.
FAULT_NOTICE_BYTES_MAX = 256 * 1024
FAULT_KINDS = ("state-loss", "fork")

# Field kinds: "view" 0..VIEW_MAX, "height" 0..HEIGHT_MAX, "hash" 32 bytes ("hash?": or
# b""), "sig" 64 bytes, "sig?" 64 or 0 bytes, "block" an rlp Block, "cert" an rlp
# CommitCertificate ("block?" and "cert?": or b"", absent), "vcs" a list of at most n
# ViewChange, "index" a bookkeeper index below n, "fault" one of FAULT_KINDS.
Spec = tuple[tuple[str, str], ...]
RECORD_KINDS = {"block": Block, "block?": Block, "cert": CommitCertificate,
                "cert?": CommitCertificate}


@dataclass(frozen=True, kw_only=True)
class Message:
    TYPE: ClassVar[str]
    SPEC: ClassVar[Spec]

    sender: int
    signature: bytes = b""
    # The first height of the bookkeeper set the sender runs in (chain/epochs.py): sender
    # indexes, views and groups mean something only within one epoch, so a message of
    # another one is never taken for this one's (a straggler's SUSPECT would otherwise
    # move the new set's views).
    epoch: int = 1

    def signing_payload(self) -> bytes:
        body: bytes = rlp.encode(self._rlp_body())
        return SIGNING_DOMAIN + body

    def _rlp_body(self) -> list[Any]:
        body: list[Any] = [self.TYPE.encode(), self.sender, self.epoch]
        for name, kind in self.SPEC:
            value = getattr(self, name)
            body.append([vc._rlp_body() + [vc.signature] for vc in value] if kind == "vcs"
                        else value.encode() if kind == "fault" else value)
        return body

    def signed(self, key: KeyPair) -> Message:
        return dataclasses.replace(self, signature=key.sign(self.signing_payload()))

    def verify_signature(self, public_key: bytes) -> bool:
        return is_valid_signature(public_key, self.signature, self.signing_payload())

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.TYPE, "sender": self.sender, "epoch": self.epoch,
                                "signature": self.signature}
        for name, kind in self.SPEC:
            value = getattr(self, name)
            wire[name] = [vc.to_wire() for vc in value] if kind == "vcs" else value
        return wire

    def payload_bytes(self) -> int:
        """The bytes its fields hold (blocks, certificates, nested messages): what keeping
        it costs."""
        total = 0
        for name, kind in self.SPEC:
            value = getattr(self, name)
            if kind == "vcs":
                total += sum(vc.payload_bytes() for vc in value)
            elif isinstance(value, bytes):
                total += len(value)
        return total

    def decoded_block(self, name: str) -> Block | None:
        """Field `name` (a "block" kind) as a Block, None when absent. Decoded at the first
        call and kept (a 2,000-transaction block costs 0.2-0.5 s to decode on two shared
        cores); raises DecodeError when the bytes are no block. The caller checks it
        (`check_block`) and decides first whether it is worth decoding (`decoding_bytes`)."""
        return self._decoded(name, Block)

    def decoding_bytes(self, name: str) -> int:
        """What decoding field `name` (a "block" kind) would cost now, in bytes: 0 when it
        is absent, already decoded, or a block decoded recently (RECENT_BLOCKS)."""
        raw = getattr(self, name)
        decoded = (name, 0) in self.__dict__.get("_records", {})
        return 0 if not raw or decoded or RECENT_BLOCKS.holds(raw) else len(raw)

    def decoded_certificate(self, name: str) -> CommitCertificate | None:
        """Field `name` (a "cert" kind) as a CommitCertificate, None when absent."""
        return self._decoded(name, CommitCertificate)

    def _decoded(self, name: str, record: type[RECORD]) -> RECORD | None:
        assert RECORD_KINDS[dict(self.SPEC)[name]] is record, f"{name} holds no {record}"
        raw = getattr(self, name)
        return cached_decode(self, (name, 0), raw, record) if raw else None


def cached_decode(owner: object, key: tuple[str, int], raw: bytes,
                  record: type[RECORD]) -> RECORD:
    """`decode(raw, record)` once per (owner, key): in the owner's instance dict, which a
    frozen dataclass allows, and which is neither signed, sent nor compared. Blocks are
    also remembered by content across messages (RECENT_BLOCKS)."""
    cache: dict[tuple[str, int], Any] = owner.__dict__.setdefault("_records", {})
    if key not in cache:
        cache[key] = RECENT_BLOCKS.decode(raw) if record is Block else decode(raw, record)
    value: RECORD = cache[key]
    return value


class RecentBlocks:
    """The last few blocks decoded, by the hash of their bytes. The same block arrives many
    times — a PREPARE retransmitted while the follower is still executing it, the FINAL
    that carries it again, a NEW-VIEW re-preparing it — and decoding one of 2,000
    transactions costs 30-500 ms: decoded again on every copy, a loaded follower fell further
    behind with each retransmission (congestion collapse, issue 10). Decoding is a pure
    function of the bytes, so a copy may take the earlier result."""

    def __init__(self, count_max: int, bytes_max: int) -> None:
        self.count_max = count_max
        self.bytes_max = bytes_max
        self._blocks: OrderedDict[bytes, tuple[Block, int]] = OrderedDict()
        self._bytes = 0

    def holds(self, raw: bytes) -> bool:
        return keccak256(raw) in self._blocks

    def decode(self, raw: bytes) -> Block:
        key = keccak256(raw)
        hit = self._blocks.get(key)
        if hit is not None:
            self._blocks.move_to_end(key)
            return hit[0]
        block = decode(raw, Block)
        self._blocks[key] = (block, len(raw))
        self._bytes += len(raw)
        while len(self._blocks) > self.count_max or self._bytes > self.bytes_max:
            _, (_, size) = self._blocks.popitem(last=False)
            self._bytes -= size
        return block


RECENT_BLOCKS = RecentBlocks(count_max=16, bytes_max=32 << 20)


@dataclass(frozen=True, kw_only=True)
class Prepare(Message):
    """The primary's proposal of `block` (rlp) at `height`; `vote` is its commit vote."""

    TYPE = "prepare"
    SPEC = (("view", "view"), ("height", "height"), ("block", "block"), ("vote", "sig"))
    view: int
    height: int
    block: bytes
    vote: bytes


@dataclass(frozen=True, kw_only=True)
class Commit(Message):
    """A follower's vote for the block `block_hash` at `height` in `view`."""

    TYPE = "commit"
    SPEC = (("view", "view"), ("height", "height"), ("block_hash", "hash"), ("vote", "sig"))
    view: int
    height: int
    block_hash: bytes
    vote: bytes


@dataclass(frozen=True, kw_only=True)
class Final(Message):
    """`block_hash` at `height` is final (certificate = rlp CommitCertificate with its
    finality proof: chain.certificate.verify_finality). `block` is the rlp block for
    replicas that never saw it (lazy replication), b"" otherwise."""

    TYPE = "final"
    SPEC = (("height", "height"), ("block_hash", "hash"), ("certificate", "cert"),
            ("block", "block?"))
    height: int
    block_hash: bytes
    certificate: bytes
    block: bytes


@dataclass(frozen=True, kw_only=True)
class Suspect(Message):
    """SUSPECT(view): the sender, a member of sg_view, asks to leave `view`."""

    TYPE = "suspect"
    SPEC = (("view", "view"),)
    view: int


@dataclass(frozen=True, kw_only=True)
class ViewChange(Message):
    """VIEW-CHANGE(view): the sender's final head (with its certificate and finality proof,
    b"" at genesis: the proof of its last final block), its commit log: the block at
    final_height+1 whose full certificate of `entry_view` it holds, if any (`entry_block`
    and `entry_certificate` b""), and its prepare log (XFT §4.4): the entry it accepted at
    final_height+1, committed or not, as the view `prepare_view`, the block hash and the
    primary's signed vote (`prepare_hash` and `prepare_vote` b"" when it accepted none).
    Fault detection (consensus/detection.py) reads both logs."""

    TYPE = "view_change"
    SPEC = (("view", "view"), ("final_height", "height"), ("final_hash", "hash"),
            ("final_certificate", "cert?"), ("entry_view", "view"), ("entry_block", "block?"),
            ("entry_certificate", "cert?"), ("prepare_view", "view"), ("prepare_hash", "hash?"),
            ("prepare_vote", "sig?"))
    view: int
    final_height: int
    final_hash: bytes
    final_certificate: bytes
    entry_view: int
    entry_block: bytes
    entry_certificate: bytes
    prepare_view: int = 0
    prepare_hash: bytes = b""
    prepare_vote: bytes = b""


@dataclass(frozen=True, kw_only=True)
class VcFinal(Message):
    """VC-FINAL(view): the VIEW-CHANGE messages this new active replica collected."""

    TYPE = "vc_final"
    SPEC = (("view", "view"), ("view_changes", "vcs"))
    view: int
    view_changes: tuple[ViewChange, ...]


@dataclass(frozen=True, kw_only=True)
class NewView(Message):
    """NEW-VIEW(view): the new primary's selection: the final head it starts from and the
    re-prepared pick at final_height+1 (`block` b"" and `vote` b"" when there is none)."""

    TYPE = "new_view"
    SPEC = (("view", "view"), ("final_height", "height"), ("final_hash", "hash"),
            ("block", "block?"), ("vote", "sig?"))
    view: int
    final_height: int
    final_hash: bytes
    block: bytes
    vote: bytes


@dataclass(frozen=True, kw_only=True)
class Committed(Message):
    """t >= 2 only: the sender holds the full certificate (rlp) of `block_hash` at `height`
    in `view`, i.e. it logged the commit. A block is final once every member does; `holds`
    is the sender's signature on `chain.certificate.final_message(...)`, its part of the
    finality proof stored with the block."""

    TYPE = "committed"
    SPEC = (("view", "view"), ("height", "height"), ("block_hash", "hash"),
            ("certificate", "cert"), ("holds", "sig"))
    view: int
    height: int
    block_hash: bytes
    certificate: bytes
    holds: bytes


@dataclass(frozen=True, kw_only=True)
class VcConfirm(Message):
    """VC-CONFIRM(view) (XFT §4.4): after VC-FINAL, each new active replica tells the others
    the digest of the VIEW-CHANGE set it selects from and of the replicas it found faulty
    (`consensus.detection.confirm_digest`). Only when every member sent the same digest does
    the new view start: every correct member then selected from one set, so a member that
    sent different VC-FINALs to different members cannot split the selection."""

    TYPE = "vc_confirm"
    SPEC = (("view", "view"), ("digest", "hash"))
    view: int
    digest: bytes


@dataclass(frozen=True, kw_only=True)
class FaultNotice(Message):
    """A proof that bookkeeper `accused` misbehaved (consensus/detection.py checks it; the
    sender is only its messenger and is never trusted):

    - "fork": two votes of `accused` (signatures on commit_message) for one `view` and
      `height` on different blocks `hash_a` / `hash_b` (`vote_a`, `vote_b`);
    - "state-loss": `accused`'s signed VIEW-CHANGE (`view_changes`, exactly one) reports
      less than `certificate` proves it held: that certificate of block `hash_a` at
      `height`, of view `view`, holds its vote as the follower of t = 1, or its finality
      signature.
    """

    TYPE = "fault"
    SPEC = (("kind", "fault"), ("accused", "index"), ("view", "view"), ("height", "height"),
            ("hash_a", "hash"), ("vote_a", "sig?"), ("hash_b", "hash?"), ("vote_b", "sig?"),
            ("certificate", "cert?"), ("view_changes", "vcs"))
    kind: str
    accused: int
    view: int
    height: int
    hash_a: bytes
    vote_a: bytes
    hash_b: bytes
    vote_b: bytes
    certificate: bytes
    view_changes: tuple[ViewChange, ...]


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (Prepare, Commit, Committed, Final, Suspect, ViewChange, VcFinal,
                            NewView, VcConfirm, FaultNotice)
}


def view_of(message: Message) -> int:
    """The view a message belongs to; FINAL belongs to none (-1): its certificate names one."""
    if isinstance(message, Prepare | Commit | Committed | Suspect | ViewChange | VcFinal |
                  NewView | VcConfirm):
        return message.view
    return -1  # FINAL and FAULT: of no view (a FAULT's `view` is its evidence's)


def message_from_wire(obj: object, n: int) -> Message:
    """Decode a wire dict strictly for a cluster of n bookkeepers; raise InvalidMessage
    on anything malformed or out of range."""
    if not isinstance(obj, dict):
        raise InvalidMessage(DecodeReason.NOT_A_MAP, type(obj).__name__)
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise InvalidMessage(DecodeReason.UNKNOWN_TYPE, repr(kind)[:40])
    cls = MESSAGE_TYPES[kind]
    expected = {"type", "sender", "epoch", "signature"} | {name for name, _ in cls.SPEC}
    if set(obj) != expected:
        raise InvalidMessage(DecodeReason.BAD_FIELDS, f"{kind}: {sorted(map(str, obj))[:12]}")
    values: dict[str, Any] = {
        "sender": _sender(_uint(obj, "sender", UINT_MAX), n, "sender"),
        "epoch": _uint(obj, "epoch", HEIGHT_MAX),
        "signature": _bytes(obj, "signature", "sig"),
    }
    for name, field_kind in cls.SPEC:
        values[name] = _field(obj, name, field_kind, n)
    message = cls(**values)
    for name, field_kind in cls.SPEC:
        if field_kind in RECORD_KINDS:
            _check_record(message, name, field_kind, n)
    _check_consistent(message)
    return message


def check_block(block: Block, n: int, *, exact: bool = True) -> None:
    """Every number of the header in range, the proposer and any certificate's voters
    below n. Transactions are the ledger's to check (`app.check` executes them). Not
    `exact`: n bounds the set, as for blocks of several epochs (block sync)."""
    header = block.header
    _in_range(header.number, HEIGHT_MAX, "block number")
    _in_range(header.view, VIEW_MAX, "block view")
    _in_range(header.timestamp_ms, UINT_MAX, "block timestamp")
    _in_range(header.gas_used, UINT_MAX, "block gas")
    _sender(header.proposer, n, "block proposer")
    for certificate in block.certificate:
        check_certificate(certificate, n, exact=exact)


def check_certificate(certificate: CommitCertificate, n: int, *, exact: bool = True) -> None:
    _in_range(certificate.view, VIEW_MAX, "certificate view")
    # Every certificate holds the t + 1 votes of one synchronous group (n = 2t + 1); of a
    # set of at most n when not `exact` (its own set is checked with verify_certificate).
    votes, group = len(certificate.votes), (n - 1) // 2 + 1
    if not (votes == group if exact else 2 <= votes <= group):
        raise InvalidMessage(DecodeReason.BAD_LENGTH,
                             f"certificate with {len(certificate.votes)} votes")
    # The finality proof: none yet, one (t = 1, the primary) or every member's.
    if len(certificate.finality) > (n - 1) // 2 + 1:
        raise InvalidMessage(DecodeReason.BAD_LENGTH,
                             f"finality proof with {len(certificate.finality)} signatures")
    for vote in [*certificate.votes, *certificate.finality]:
        _sender(vote.replica, n, "voter")
        if len(vote.signature) != SIGNATURE_BYTES:
            raise InvalidMessage(DecodeReason.BAD_LENGTH, "vote signature")


def _check_record(message: Message, name: str, kind: str, n: int) -> None:
    if RECORD_KINDS[kind] is Block:
        return  # decoded by the handler that needs it (see the module docstring)
    try:
        certificate = message.decoded_certificate(name)
        if certificate is None:
            return
        if isinstance(message, ViewChange) and name == "final_certificate":
            # The final head may be the previous epoch's last block, certified by
            # another set (the replica checks it with that set: chain/epochs.py).
            check_certificate(certificate, BOOKKEEPERS_MAX, exact=False)
        else:
            check_certificate(certificate, n)
    except DecodeError as exc:
        raise InvalidMessage(DecodeReason.BAD_RECORD, f"{name}: {str(exc)[:120]}") from exc


def _check_consistent(message: Message) -> None:
    """Fields that come in pairs: present together or absent together."""
    pairs: list[tuple[str, bool, bool]] = []
    if isinstance(message, ViewChange):
        pairs = [("final_certificate", message.final_height == 0, not message.final_certificate),
                 ("entry_certificate", not message.entry_block, not message.entry_certificate),
                 ("entry_view", not message.entry_block,
                  not message.entry_block and message.entry_view == 0),
                 ("prepare_vote", not message.prepare_hash, not message.prepare_vote),
                 ("prepare_view", not message.prepare_hash,
                  not message.prepare_hash and message.prepare_view == 0)]
    elif isinstance(message, NewView):
        pairs = [("vote", not message.block, not message.vote)]
    elif isinstance(message, VcFinal) and any(vc.epoch != message.epoch for vc in message.view_changes):
        raise InvalidMessage(DecodeReason.INCONSISTENT, "vc_final.view_changes of another epoch")
    elif isinstance(message, FaultNotice):
        _check_fault_notice(message)
    for name, absent, expected_absent in pairs:
        if absent != expected_absent:
            raise InvalidMessage(DecodeReason.INCONSISTENT, f"{message.TYPE}.{name}")


def _check_fault_notice(message: FaultNotice) -> None:
    if message.payload_bytes() > FAULT_NOTICE_BYTES_MAX:
        raise InvalidMessage(DecodeReason.BAD_LENGTH,
                             f"fault notice of {message.payload_bytes()} bytes")
    fork = message.kind == "fork"
    pairs = [("vote_a", not message.vote_a, not fork), ("vote_b", not message.vote_b, not fork),
             ("hash_b", not message.hash_b, not fork), ("certificate", not message.certificate, fork),
             ("view_changes", not message.view_changes, fork)]
    for name, absent, expected_absent in pairs:
        if absent != expected_absent:
            raise InvalidMessage(DecodeReason.INCONSISTENT, f"fault.{name}")
    if len(message.view_changes) > 1 or \
            any(vc.sender != message.accused or vc.epoch != message.epoch
                for vc in message.view_changes):
        raise InvalidMessage(DecodeReason.INCONSISTENT, "fault.view_changes: one, the accused's")


def _field(obj: dict[Any, Any], name: str, kind: str, n: int) -> Any:
    if kind == "index":
        return _sender(_uint(obj, name, UINT_MAX), n, name)
    if kind == "fault":
        value = obj[name]
        if not isinstance(value, str) or value not in FAULT_KINDS:
            raise InvalidMessage(DecodeReason.OUT_OF_RANGE, f"{name} {str(value)[:20]!r}")
        return value
    if kind == "view":
        return _uint(obj, name, VIEW_MAX)
    if kind == "height":
        return _uint(obj, name, HEIGHT_MAX)
    if kind == "vcs":
        value = obj[name]
        if not isinstance(value, list | tuple):
            raise InvalidMessage(DecodeReason.BAD_TYPE, f"{name} is not a list")
        if len(value) > n:  # one VIEW-CHANGE per bookkeeper at most
            raise InvalidMessage(DecodeReason.BAD_LENGTH, f"{name} holds {len(value)} > n")
        decoded = tuple(message_from_wire(item, n) for item in value)
        if not all(isinstance(vc, ViewChange) for vc in decoded):
            raise InvalidMessage(DecodeReason.BAD_TYPE, f"{name} holds a non view-change")
        return decoded
    return _bytes(obj, name, kind)


def _uint(obj: dict[Any, Any], name: str, maximum: int) -> int:
    value = obj[name]
    if type(value) is not int:
        raise InvalidMessage(DecodeReason.BAD_TYPE, f"{name} is not an int")
    _in_range(value, maximum, name)
    return value


def _in_range(value: int, maximum: int, name: str) -> None:
    if not 0 <= value <= maximum:
        raise InvalidMessage(DecodeReason.OUT_OF_RANGE, f"{name} {value} not in 0..{maximum}")


def _sender(value: int, n: int, name: str) -> int:
    if not 0 <= value < n:
        raise InvalidMessage(DecodeReason.UNKNOWN_SENDER, f"{name} {value} of {n} bookkeepers")
    return value


def _bytes(obj: dict[Any, Any], name: str, kind: str) -> bytes:
    value = obj[name]
    if not isinstance(value, bytes):
        raise InvalidMessage(DecodeReason.BAD_TYPE, f"{name} is not bytes")
    length_ok = {
        "hash": len(value) == 32,
        "hash?": len(value) in (0, 32),
        "sig": len(value) == SIGNATURE_BYTES,
        "sig?": len(value) in (0, SIGNATURE_BYTES),
        "block": 0 < len(value) <= BLOB_BYTES_MAX,
        "cert": 0 < len(value) <= CERTIFICATE_BYTES_MAX,
        "block?": len(value) <= BLOB_BYTES_MAX,
        "cert?": len(value) <= CERTIFICATE_BYTES_MAX,
    }[kind]
    if not length_ok:
        raise InvalidMessage(DecodeReason.BAD_LENGTH, f"{name} has length {len(value)}")
    return value
