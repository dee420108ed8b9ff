"""Fault detection (XFT §4.4): state loss and forks, found in a view change, with proofs.

XPaxos is consistent outside anarchy; §4.4 adds a round that lets the new active replicas
find, outside anarchy, every fault that would break consistency in anarchy, and prove it.
Here, with one log entry per replica (consensus/log.py), a VIEW-CHANGE carries the final
head with its proof, the commit log (the entry with its full certificate) and the prepare
log (the entry accepted, with the primary's vote). After VC-FINAL each new active replica
runs the checks below over the merged set, then VC-CONFIRM (consensus/viewchange.py) makes
sure every member ran them over the same set.

- **Fork**: one replica's two signatures on commit_message for one view and height but
  different blocks. No correct replica signs twice there (it persists its entry before it
  votes and accepts one proposal per height and view), so the two signatures are the
  proof. A primary that sends different blocks to its followers shows it: their prepare
  logs carry its two votes.
- **State loss**: a replica's VIEW-CHANGE of view w reports less than it is proven to have
  held in an earlier view v < w, at a height h of this epoch. It held the certificate of
  (v, h) if the certificate holds its vote as the follower of a t = 1 group (the follower
  logs the full certificate before it votes) or its finality signature (t >= 2: signed
  after logging the certificate; t = 1: the primary signs when it finalizes). A correct
  replica's final head never goes back and its entry is dropped only when its final head
  passes it or a later view's selection replaces it (which that replica then accepted,
  so its prepare log shows a view above v). So it must report a final head >= h, or
  final head h - 1 with a committed entry of view >= v or a prepare entry of a view > v;
  if the primary of a t = 1 group finalized (its finality signature), a final head >= h.
  Anything less is a lost or hidden log: the certificate and the signed VIEW-CHANGE are
  the proof.

A proof is self-contained (a `FaultNotice`): anyone holding the bookkeepers' keys checks it
with `verify_fault`, whoever forwarded it. Detected replicas' VIEW-CHANGEs are excluded
from the selection when the evidence is in the merged set itself (every member has the
same set after VC-CONFIRM, so all exclude the same); a replica's own final blocks may
prove more (a state loss deeper than its peers' logs reach): those it names and forwards
but does not exclude on, since the others might not hold those blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import rlp

from chain import Block, CommitCertificate, DecodeError, InvalidCertificate, decode
from chain.certificate import commit_message, final_message, synchronous_group, verify_certificate
from chain.epochs import Epoch
from consensus.errors import ConsensusError
from consensus.messages import FaultNotice, ViewChange
from crypto import Hash32, is_valid_signature, keccak256

# How far above a VIEW-CHANGE's final head a replica looks in its own chain for proof that
# the sender held more. Only a VIEW-CHANGE reporting a head below this replica's costs
# anything (a lagging or a lying sender), and each block read decodes a whole block (about
# 40 ms for 2,000 transactions here): the first blocks above the claimed head are where a
# lost log shows (the sender's vote or finality signature), so a few suffice.
CHAIN_SCAN_BLOCKS_MAX = 4


class InvalidFault(ConsensusError):
    """A FAULT notice whose proof does not hold."""


@dataclass(frozen=True)
class SignedVote:
    """A signature of `replica` on commit_message(view, height, block_hash)."""

    replica: int
    view: int
    height: int
    block_hash: Hash32
    signature: bytes


def votes_in(vc: ViewChange, n: int, t: int, epoch: int) -> list[SignedVote]:
    """The commit votes a VIEW-CHANGE (already checked by the replica) carries, at heights of
    this epoch: its final head's certificate, its committed entry's, its prepare log's
    primary vote."""
    found: list[SignedVote] = []
    for name, height, block_hash in (("final_certificate", vc.final_height, vc.final_hash),
                                     ("entry_certificate", vc.final_height + 1, _entry_hash(vc))):
        certificate = vc.decoded_certificate(name)
        if certificate is None or height < epoch:
            continue
        found += [SignedVote(vote.replica, certificate.view, height, block_hash, vote.signature)
                  for vote in certificate.votes]
    if vc.prepare_hash and vc.final_height + 1 >= epoch:
        primary = synchronous_group(vc.prepare_view, n, t)[0]
        found.append(SignedVote(primary, vc.prepare_view, vc.final_height + 1, vc.prepare_hash,
                                vc.prepare_vote))
    return found


def _entry_hash(vc: ViewChange) -> Hash32:
    block = vc.decoded_block("entry_block")
    return block.hash if block is not None else b""


def forks(votes: Iterable[SignedVote], epoch: int) -> list[FaultNotice]:
    """One proof per replica that signed two blocks for one view and height (the two
    smallest hashes, so that every member builds the same proof)."""
    by_slot: dict[tuple[int, int, int], dict[bytes, bytes]] = {}
    for vote in votes:
        by_slot.setdefault((vote.replica, vote.view, vote.height), {})[vote.block_hash] = \
            vote.signature
    proofs: dict[int, FaultNotice] = {}
    for (replica, view, height), signed in sorted(by_slot.items()):
        if len(signed) < 2 or replica in proofs:
            continue
        (hash_a, vote_a), (hash_b, vote_b) = sorted(signed.items())[:2]
        proofs[replica] = FaultNotice(sender=0, epoch=epoch, kind="fork", accused=replica,
                                      view=view, height=height, hash_a=hash_a, vote_a=vote_a,
                                      hash_b=hash_b, vote_b=vote_b, certificate=b"",
                                      view_changes=())
    return [proofs[replica] for replica in sorted(proofs)]


def held_by(certificate: CommitCertificate, height: int, block_hash: Hash32, *, chain_id: int,
            keys: list[bytes], t: int) -> list[tuple[int, bool]]:
    """The replicas a certificate (its votes already verified) proves held it, each with
    whether it had finalized the block (the t = 1 primary's finality signature). A finality
    signature counts only when it is valid: a VIEW-CHANGE's entry certificate is checked
    for its votes, not for finality, and must not frame anyone."""
    group = synchronous_group(certificate.view, len(keys), t)
    held: dict[int, bool] = {}
    if t == 1:
        held.update({vote.replica: False for vote in certificate.votes if vote.replica == group[1]})
    signed = final_message(chain_id, certificate.view, height, block_hash)
    for signature in certificate.finality:
        if signature.replica in group and \
                is_valid_signature(keys[signature.replica], signature.signature, signed):
            held[signature.replica] = t == 1 and signature.replica == group[0]
    return sorted(held.items())


def lost_state(vc: ViewChange, view: int, height: int, finalized: bool) -> bool:
    """Whether `vc` reports less than its sender held: the certificate of view `view` at
    `height` (finalized: it had made the block final)."""
    if view >= vc.view or vc.final_height >= height:
        return False
    if finalized or vc.final_height + 1 < height:
        return True
    kept = bool(vc.entry_block) and vc.entry_view >= view
    replaced = bool(vc.prepare_hash) and vc.prepare_view > view
    return not (kept or replaced)


def state_losses(view_changes: dict[int, ViewChange],
                 evidence: Iterable[tuple[bytes, int, Hash32]], *, chain_id: int,
                 keys: list[bytes], t: int, epoch: int) -> list[FaultNotice]:
    """Proofs for the senders whose VIEW-CHANGE reports less than a certificate in
    `evidence` ((rlp certificate, height, block hash), all already verified) proves."""
    proofs: dict[int, FaultNotice] = {}
    for raw, height, block_hash in evidence:
        if height < epoch:
            continue
        certificate = decode(raw, CommitCertificate)
        for replica, finalized in held_by(certificate, height, block_hash, chain_id=chain_id,
                                          keys=keys, t=t):
            vc = view_changes.get(replica)
            if vc is None or replica in proofs or \
                    not lost_state(vc, certificate.view, height, finalized):
                continue
            proofs[replica] = FaultNotice(sender=0, epoch=epoch, kind="state-loss",
                                          accused=replica, view=certificate.view, height=height,
                                          hash_a=block_hash, vote_a=b"", hash_b=b"", vote_b=b"",
                                          certificate=raw, view_changes=(vc,))
    return [proofs[replica] for replica in sorted(proofs)]


def evidence_in(view_changes: Iterable[ViewChange]) -> list[tuple[bytes, int, Hash32]]:
    """The certificates a set of (checked) VIEW-CHANGEs carries: final heads with their
    proof, committed entries."""
    found = []
    for vc in view_changes:
        if vc.final_certificate:
            found.append((vc.final_certificate, vc.final_height, vc.final_hash))
        if vc.entry_certificate:
            found.append((vc.entry_certificate, vc.final_height + 1, _entry_hash(vc)))
    return found


def evidence_in_chain(view_changes: Iterable[ViewChange], final_height: int,
                      final_block: Callable[[int], Block | None]) -> list[tuple[bytes, int, Hash32]]:
    """The certificates of this replica's own final blocks just above each VIEW-CHANGE's
    final head (at most CHAIN_SCAN_BLOCKS_MAX each)."""
    heights: set[int] = set()
    for vc in view_changes:
        heights.update(range(vc.final_height + 1,
                             min(vc.final_height + CHAIN_SCAN_BLOCKS_MAX, final_height) + 1))
    found = []
    for height in sorted(heights):
        block = final_block(height)
        if block is not None and block.certificate:
            found.append((rlp.encode(block.certificate[0]), height, block.hash))
    return found


def detect(view_changes: dict[int, ViewChange], *, chain_id: int, keys: list[bytes], t: int,
           epoch: int) -> list[FaultNotice]:
    """Every fault the merged VIEW-CHANGE set proves by itself (the same at every member)."""
    votes = [vote for sender in sorted(view_changes)
             for vote in votes_in(view_changes[sender], len(keys), t, epoch)]
    found = {proof.accused: proof for proof in
             state_losses(view_changes, evidence_in(view_changes.values()), chain_id=chain_id,
                          keys=keys, t=t, epoch=epoch)}
    for proof in forks(votes, epoch):
        found.setdefault(proof.accused, proof)
    return [found[replica] for replica in sorted(found)]


def confirm_digest(view_changes: dict[int, ViewChange], accused: Iterable[int]) -> Hash32:
    """What VC-CONFIRM carries: the VIEW-CHANGE set a member selects from (each by its
    signature) and the replicas it excludes."""
    encoded = rlp.encode([[[sender, view_changes[sender].signature]
                           for sender in sorted(view_changes)], sorted(accused)])
    return keccak256(b"gridchain/vc-confirm\x00" + encoded)


def verify_fault(notice: FaultNotice, *, chain_id: int, epoch: Epoch) -> None:
    """Check a FAULT notice's proof against the bookkeepers of `epoch`; raise InvalidFault.
    The notice decoded strictly (message_from_wire), so its fields are in range."""
    keys, t = list(epoch.keys), epoch.t
    accused = keys[notice.accused]
    if notice.height < epoch.start:
        raise InvalidFault("evidence below the epoch")
    if notice.kind == "fork":
        if notice.hash_a == notice.hash_b:
            raise InvalidFault("the two votes are for one block")
        for block_hash, vote in ((notice.hash_a, notice.vote_a), (notice.hash_b, notice.vote_b)):
            if not is_valid_signature(accused, vote, commit_message(chain_id, notice.view,
                                                                    notice.height, block_hash)):
                raise InvalidFault("a vote is not the accused's")
        return
    [vc] = notice.view_changes
    if not vc.verify_signature(accused):
        raise InvalidFault("the VIEW-CHANGE is not the accused's")
    try:
        certificate = decode(notice.certificate, CommitCertificate)
        verify_certificate(certificate, chain_id=chain_id, height=notice.height,
                           block_hash=notice.hash_a, bookkeepers=keys, t=t)
    except (DecodeError, InvalidCertificate) as exc:
        raise InvalidFault(f"bad certificate: {exc}") from exc
    if certificate.view != notice.view:
        raise InvalidFault("the certificate is of another view")
    for replica, finalized in held_by(certificate, notice.height, notice.hash_a,
                                      chain_id=chain_id, keys=keys, t=t):
        if replica == notice.accused and lost_state(vc, certificate.view, notice.height, finalized):
            return
    raise InvalidFault("the VIEW-CHANGE reports what the certificate proves")
