"""XPaxos protocol messages: fields, signing and the strict wire codec.

Every message is a frozen dataclass signed by its `sender` (a bookkeeper index) with
Ed25519 over a domain-separated rlp encoding of its type and fields, sender included.
`to_wire()` gives a msgpack-able dict with a "type" key; `message_from_wire` checks every
field's type and bounds and raises only `InvalidMessage`. Signatures are checked by the
receiver (`verify_signature`), which knows the bookkeepers' keys.

The votes carried by PREPARE, COMMIT and NEW-VIEW are separate signatures on
`chain.certificate.commit_message(...)`: they are what a `CommitCertificate` collects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import rlp

from consensus.errors import InvalidMessage
from crypto.keys import KeyPair, is_valid_signature

SIGNING_DOMAIN = b"gridchain/xpaxos\x00"
UINT_MAX = 2**64 - 1
BLOB_BYTES_MAX = 16 * 1024 * 1024  # a block on the wire; the p2p frame limit is lower
VIEW_CHANGES_MAX = 255  # a VC-FINAL carries at most one VIEW-CHANGE per bookkeeper

# Field kinds: "uint" 0..2**64-1, "hash" 32 bytes, "sig" 64 bytes, "sig?" 64 or 0 bytes,
# "blob" bytes up to BLOB_BYTES_MAX (b"" means absent), "vcs" a list of ViewChange.
Spec = tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Message:
    TYPE: ClassVar[str]
    SPEC: ClassVar[Spec]

    sender: int
    signature: bytes = b""

    def signing_payload(self) -> bytes:
        return SIGNING_DOMAIN + rlp.encode(self._rlp_body())

    def _rlp_body(self) -> list[Any]:
        body: list[Any] = [self.TYPE.encode(), self.sender]
        for name, kind in self.SPEC:
            value = getattr(self, name)
            body.append([vc._rlp_body() + [vc.signature] for vc in value] if kind == "vcs"
                        else value)
        return body

    def signed(self, key: KeyPair) -> Message:
        return dataclasses.replace(self, signature=key.sign(self.signing_payload()))

    def verify_signature(self, public_key: bytes) -> bool:
        return is_valid_signature(public_key, self.signature, self.signing_payload())

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.TYPE, "sender": self.sender,
                                "signature": self.signature}
        for name, kind in self.SPEC:
            value = getattr(self, name)
            wire[name] = [vc.to_wire() for vc in value] if kind == "vcs" else value
        return wire


@dataclass(frozen=True, kw_only=True)
class Prepare(Message):
    """The primary's proposal of `block` (rlp) at `height`; `vote` is its commit vote."""

    TYPE = "prepare"
    SPEC = (("view", "uint"), ("height", "uint"), ("block", "blob"), ("vote", "sig"))
    view: int
    height: int
    block: bytes
    vote: bytes


@dataclass(frozen=True, kw_only=True)
class Commit(Message):
    """A follower's vote for the block `block_hash` at `height` in `view`."""

    TYPE = "commit"
    SPEC = (("view", "uint"), ("height", "uint"), ("block_hash", "hash"), ("vote", "sig"))
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
    SPEC = (("height", "uint"), ("block_hash", "hash"), ("certificate", "blob"),
            ("block", "blob"))
    height: int
    block_hash: bytes
    certificate: bytes
    block: bytes


@dataclass(frozen=True, kw_only=True)
class Suspect(Message):
    """SUSPECT(view): the sender, a member of sg_view, asks to leave `view`."""

    TYPE = "suspect"
    SPEC = (("view", "uint"),)
    view: int


@dataclass(frozen=True, kw_only=True)
class ViewChange(Message):
    """VIEW-CHANGE(view): the sender's final head (with its certificate and finality proof,
    b"" at genesis)
    and its commit log: the block at final_height+1 whose full certificate of
    `entry_view` it holds, if any (`entry_block` and `entry_certificate` b"")."""

    TYPE = "view_change"
    SPEC = (("view", "uint"), ("final_height", "uint"), ("final_hash", "hash"),
            ("final_certificate", "blob"), ("entry_view", "uint"), ("entry_block", "blob"),
            ("entry_certificate", "blob"))
    view: int
    final_height: int
    final_hash: bytes
    final_certificate: bytes
    entry_view: int
    entry_block: bytes
    entry_certificate: bytes


@dataclass(frozen=True, kw_only=True)
class VcFinal(Message):
    """VC-FINAL(view): the VIEW-CHANGE messages this new active replica collected."""

    TYPE = "vc_final"
    SPEC = (("view", "uint"), ("view_changes", "vcs"))
    view: int
    view_changes: tuple[ViewChange, ...]


@dataclass(frozen=True, kw_only=True)
class NewView(Message):
    """NEW-VIEW(view): the new primary's selection: the final head it starts from and the
    re-prepared pick at final_height+1 (`block` b"" and `vote` b"" when there is none)."""

    TYPE = "new_view"
    SPEC = (("view", "uint"), ("final_height", "uint"), ("final_hash", "hash"),
            ("block", "blob"), ("vote", "sig?"))
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
    SPEC = (("view", "uint"), ("height", "uint"), ("block_hash", "hash"),
            ("certificate", "blob"), ("holds", "sig"))
    view: int
    height: int
    block_hash: bytes
    certificate: bytes
    holds: bytes


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (Prepare, Commit, Committed, Final, Suspect, ViewChange, VcFinal,
                            NewView)
}


def view_of(message: Message) -> int:
    """The view a message belongs to; FINAL belongs to none (-1): its certificate names one."""
    if isinstance(message, Prepare | Commit | Committed | Suspect | ViewChange | VcFinal |
                  NewView):
        return message.view
    return -1


def message_from_wire(obj: object) -> Message:
    """Decode a wire dict strictly; raise InvalidMessage on anything malformed."""
    if not isinstance(obj, dict):
        raise InvalidMessage("not-a-map", type(obj).__name__)
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise InvalidMessage("unknown-type", repr(kind)[:40])
    cls = MESSAGE_TYPES[kind]
    expected = {"type", "sender", "signature"} | {name for name, _ in cls.SPEC}
    if set(obj) != expected:
        raise InvalidMessage("bad-fields", f"{kind}: {sorted(map(str, obj))[:12]}")
    values: dict[str, Any] = {
        "sender": _field(obj, "sender", "uint"),
        "signature": _field(obj, "signature", "sig"),
    }
    for name, field_kind in cls.SPEC:
        values[name] = _field(obj, name, field_kind)
    return cls(**values)


def _field(obj: dict[Any, Any], name: str, kind: str) -> Any:
    value = obj[name]
    if kind == "uint":
        if type(value) is not int or not 0 <= value <= UINT_MAX:
            raise InvalidMessage("bad-field", f"{name} is not a uint")
        return value
    if kind == "vcs":
        if not isinstance(value, list | tuple) or len(value) > VIEW_CHANGES_MAX:
            raise InvalidMessage("bad-field", f"{name} is not a list of view changes")
        decoded = tuple(message_from_wire(item) for item in value)
        if not all(isinstance(vc, ViewChange) for vc in decoded):
            raise InvalidMessage("bad-field", f"{name} holds a non view-change")
        return decoded
    if not isinstance(value, bytes):
        raise InvalidMessage("bad-field", f"{name} is not bytes")
    length_ok = {
        "hash": len(value) == 32,
        "sig": len(value) == 64,
        "sig?": len(value) in (0, 64),
        "blob": len(value) <= BLOB_BYTES_MAX,
    }[kind]
    if not length_ok:
        raise InvalidMessage("bad-field", f"{name} has length {len(value)}")
    return value
