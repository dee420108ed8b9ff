"""Crafted consensus and sync messages, signed with a real bookkeeper's key: the insider
is the threat model (with t = 1 one compromised bookkeeper is within the fault budget).

`crafted(insider, situation)` is a hypothesis strategy of (case, wire dict) pairs covering
every message type and every nesting: PREPARE, COMMIT, COMMITTED, FINAL, SUSPECT,
VIEW-CHANGE, VC-FINAL (nested VIEW-CHANGEs, junk among them, sender 99), NEW-VIEW and
sync_status / request / response. Fields are mutated around what the cluster holds now
(`Situation`: its view, final head and real certificates), so most cases are well formed
and properly signed and reach the deep handlers: views and heights one off, far ahead or
out of range, senders and voters out of range, wrong sizes, valid-looking blocks with bad
contents (wrong parent, number, roots, proposer, time, junk transactions), certificates
made of the insider's real vote and a forged one, lists up to and past their limits. The
case name is "<type>/<mutation>", for the figures.

Two drivers use it: tests/test_consensus_fuzz.py (a simulated cluster, in process) and
faults/insider.py (the `insider-fuzz` scenario, over p2p against real nodes).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

import rlp
from hypothesis import strategies as st

from chain import Block, BlockHeader, CommitCertificate, Transaction, Vote
from chain.certificate import commit_message, final_message, finality_signers, synchronous_group
from chain.types import EMPTY_TRIE_ROOT
from consensus import Message
from consensus.messages import (
    HEIGHT_MAX,
    UINT_MAX,
    VIEW_MAX,
    Commit,
    Committed,
    FaultNotice,
    Final,
    NewView,
    Prepare,
    Suspect,
    VcConfirm,
    VcFinal,
    ViewChange,
)
from consensus.sync import RESPONSE_BLOCKS_MAX
from crypto import KeyPair

CONSENSUS_TYPES = ("prepare", "commit", "committed", "final", "suspect", "view_change", "vc_final",
                   "new_view", "vc_confirm", "fault")
SYNC_TYPES = ("sync_status", "sync_request", "sync_response")
JUNK_TRANSACTIONS_MAX = 64  # per crafted block: enough to exercise execution, quick to sign


@dataclass(frozen=True)
class Insider:
    index: int
    key: KeyPair
    n: int
    chain_id: int

    @property
    def t(self) -> int:
        return (self.n - 1) // 2

    def vote(self, view: int, height: int, block_hash: bytes) -> bytes:
        if view < 0 or height < 0:
            return bytes(64)  # rlp has no negative numbers: nothing to sign
        return self.key.sign(commit_message(self.chain_id, view, height, block_hash))

    def final_signature(self, view: int, height: int, block_hash: bytes) -> bytes:
        if view < 0 or height < 0:
            return bytes(64)
        return self.key.sign(final_message(self.chain_id, view, height, block_hash))


@dataclass
class Situation:
    """What the fuzzer knows of the cluster now."""

    view: int
    height: int  # final height
    head_hash: bytes
    state_root: bytes  # of the final head
    # Final blocks it can replay (rlp, certificate inside), by height; the head among them.
    finals: dict[int, bytes] = field(default_factory=dict)
    timestamp_ms: int = 0
    # VIEW-CHANGEs other bookkeepers sent the insider (it is in their new view's group), by
    # sender: replayed inside a VC-FINAL they make one that verifies, and the handlers go
    # on to the selection and NEW-VIEW.
    view_changes: dict[int, ViewChange] = field(default_factory=dict)


# --- small pieces -------------------------------------------------------------------------

def _near(rng: random.Random, current: int, maximum: int) -> tuple[str, int]:
    """A view or height: current, one off, a little ahead, far ahead, at or past its bound."""
    # In range nine times in ten: the rest is refused at decode, which the codec tests cover.
    choice = rng.choice(["now"] * 24 + ["next"] * 6 + ["previous"] * 4 + ["ahead"] * 4 +
                        ["far", "max", "zero", "past-max", "uint-max", "negative"])
    value = {"now": current, "next": current + 1, "previous": max(current - 1, 0),
             "ahead": current + rng.randint(2, 50), "far": current + 10**12, "max": maximum,
             "past-max": maximum + 1, "uint-max": UINT_MAX, "negative": -1, "zero": 0}[choice]
    return ("" if choice == "now" else choice), value


def _sender(rng: random.Random, insider: Insider) -> tuple[str, int]:
    choice = rng.choice(["own"] * 30 + ["other"] * 3 + ["n", "99"])
    others = [i for i in range(insider.n) if i != insider.index]
    value = {"own": insider.index, "other": rng.choice(others), "n": insider.n, "99": 99}[choice]
    return ("" if choice == "own" else f"sender-{choice}"), value


def _hash(rng: random.Random, situation: Situation, block_hash: bytes) -> tuple[str, bytes]:
    choice = rng.choice(["block", "block", "head", "random", "short"])
    value = {"block": block_hash, "head": situation.head_hash, "random": rng.randbytes(32),
             "short": rng.randbytes(31)}[choice]
    return ("" if choice == "block" else f"hash-{choice}"), value


def _junk_transactions(rng: random.Random, chain_id: int) -> list[Transaction]:
    count = rng.choice([0, 0, 1, 3, JUNK_TRANSACTIONS_MAX])
    key = KeyPair.from_seed(rng.randbytes(32))
    txs = []
    for k in range(count):
        kind = rng.choice(["wrong-nonce", "wrong-chain", "huge-value", "bad-method", "bad-args", "unsigned"])
        tx = Transaction.create(key, chain_id=chain_id + (kind == "wrong-chain"), nonce=rng.randrange(2**64),
                                to=rng.randbytes(20), method=rng.choice(["transfer", "", "\x00", "x" * 300]),
                                value=2**64 - 1 if kind == "huge-value" else 0, gas_limit=rng.randrange(2**64))
        if kind == "bad-method":
            tx = tx.copy(method=rng.randbytes(8))
        elif kind == "bad-args":
            tx = tx.copy(args=rng.randbytes(rng.randrange(1, 64)))
        elif kind == "unsigned":
            tx = tx.copy(signature=b"")
        txs.append(tx if k % 7 else tx.copy(nonce=k))
    return txs


def block_at(rng: random.Random, insider: Insider, situation: Situation, height: int,
             view: int) -> tuple[str, Block]:
    """A valid-looking block on the final head, or one with a bad part."""
    mutation = rng.choice(["", "", "", "parent", "number", "state-root", "proposer", "timestamp-max",
                           "timestamp-past", "view", "extra-big", "transactions", "gas"])
    transactions = _junk_transactions(rng, insider.chain_id) if mutation == "transactions" else []
    header = BlockHeader(
        rng.randbytes(32) if mutation == "parent" else situation.head_hash,
        max(height, 0) + (1 if mutation == "number" else 0),
        UINT_MAX if mutation == "timestamp-max" else
        0 if mutation == "timestamp-past" else situation.timestamp_ms + 1,
        insider.n + 3 if mutation == "proposer" else insider.index,
        max(view, 0) + (7 if mutation == "view" else 0),
        rng.randbytes(32) if mutation == "state-root" else situation.state_root,
        EMPTY_TRIE_ROOT, EMPTY_TRIE_ROOT,
        UINT_MAX if mutation == "gas" else 0,
        rng.randbytes(200_000) if mutation == "extra-big" else rng.randbytes(rng.randrange(16)))
    return (f"block-{mutation}" if mutation else ""), Block(header, transactions, [])


def _raw_block(rng: random.Random, insider: Insider, situation: Situation, height: int, view: int) -> tuple[str, bytes]:
    choice = rng.choice(["crafted"] * 20 + ["final"] * 2 + ["garbage", "truncated", "empty"])
    if choice == "final" and situation.finals:
        raw = rng.choice(sorted(situation.finals.items()))[1]
        return "block-replayed", raw
    if choice == "garbage":
        return "block-garbage", rng.randbytes(rng.randrange(1, 300))
    if choice == "empty":
        return "block-empty", b""
    tag, block = block_at(rng, insider, situation, height, view)
    raw = rlp.encode(block)
    if choice == "truncated":
        return "block-truncated", raw[: rng.randrange(len(raw))]
    return tag, raw


def certificate_for(rng: random.Random, insider: Insider, situation: Situation, view: int, height: int,
                    block_hash: bytes) -> tuple[str, bytes]:
    """A real certificate of the situation, or one the insider forged around its own real vote."""
    choice = rng.choice(["forged"] * 12 + ["real"] * 8 + ["real-other-height", "voter-out-of-range",
                                                          "too-many-votes", "duplicate-voter", "view-max",
                                                          "garbage", "empty"])
    if choice.startswith("real") and situation.finals:
        heights = sorted(situation.finals)
        pick = situation.finals[height] if choice == "real" and height in situation.finals else \
            situation.finals[rng.choice(heights)]
        block = rlp.decode(pick, Block)
        return f"cert-{choice}", rlp.encode(block.certificate[0]) if block.certificate else b""
    if choice == "garbage":
        return "cert-garbage", rng.randbytes(rng.randrange(1, 200))
    if choice == "empty":
        return "cert-empty", b""
    cert_view = VIEW_MAX + 1 if choice == "view-max" else max(view, 0)
    group = list(synchronous_group(cert_view, insider.n, insider.t))
    votes = [Vote(member, insider.vote(cert_view, height, block_hash) if member == insider.index
                  else rng.randbytes(64)) for member in group]
    if choice == "voter-out-of-range":
        votes[-1] = Vote(insider.n + 5, rng.randbytes(64))
    elif choice == "too-many-votes":
        votes = votes * 40
    elif choice == "duplicate-voter":
        votes = [votes[0]] * len(votes)
    # The finality proof: none, or the signers' with the insider's real one among forged ones.
    proof = rng.choice(["none", *["forged"] * 6, "too-long"])
    finality = [] if proof == "none" else [
        Vote(member, insider.final_signature(cert_view, height, block_hash) if member == insider.index
             else rng.randbytes(64)) for member in finality_signers(cert_view, insider.n, insider.t)]
    if proof == "too-long":
        finality = finality * (insider.n + 1)
    tag = _tags(f"cert-{choice}", "" if proof == "forged" else f"finality-{proof}")
    return tag, rlp.encode(CommitCertificate(cert_view, votes, finality))


def _signed(message: Message, insider: Insider, rng: random.Random) -> tuple[str, Message]:
    if rng.randint(0, 39) == 0:
        return "unsigned", message  # signature b"": refused at decode
    if rng.randint(0, 39) == 0:
        return "bad-signature", dataclasses.replace(message, signature=bytes(64))
    if _has_negative(message):
        return "unsignable", dataclasses.replace(message, signature=bytes(64))
    return "", message.signed(insider.key)


def _has_negative(message: Message) -> bool:
    """rlp cannot encode a negative number: such a message cannot be signed (it is refused
    at decode anyway)."""
    return any(isinstance(value, int) and value < 0 for value in message.__dict__.values())


def _tags(*tags: str) -> str:
    return "+".join(tag for tag in tags if tag) or "well-formed"


# --- one strategy per message type --------------------------------------------------------

def _view_change(rng: random.Random, insider: Insider, situation: Situation, view: int,
                 *, tame: bool = False) -> tuple[str, ViewChange]:
    """`tame`: the sender's plain final head, nothing else mutated (VC-FINAL nests several,
    and one refused view change refuses them all)."""
    sender_tag, sender = _sender(rng, insider)
    head = "own-head" if tame else rng.choice(["own-head", "own-head", "older", "genesis", "ahead", "mismatch"])
    final_height = {"own-head": situation.height, "older": max(situation.height - 1, 0), "genesis": 0,
                    "ahead": situation.height + 5, "mismatch": situation.height}[head]
    final_hash = situation.head_hash if head in ("own-head", "ahead") else rng.randbytes(32)
    cert_tag, final_certificate = ("", b"") if final_height == 0 else \
        certificate_for(rng, insider, situation, view, final_height, final_hash)
    if head == "own-head" and final_height in situation.finals and (tame or rng.random() < 0.5):
        block = rlp.decode(situation.finals[final_height], Block)
        cert_tag, final_certificate = "", rlp.encode(block.certificate[0]) if block.certificate else b""
    entry_tag, entry_view, entry_block, entry_certificate = "", 0, b"", b""
    if not tame and rng.random() < 0.5:
        entry_view = rng.choice([max(view - 1, 0), view, min(view + 1, UINT_MAX), 0])
        block_tag, block = block_at(rng, insider, situation, final_height + 1, entry_view)
        entry_block = rlp.encode(block)
        c_tag, entry_certificate = certificate_for(rng, insider, situation, entry_view, block.number, block.hash)
        entry_tag = _tags("entry", block_tag, c_tag)
    tag = _tags(sender_tag, "" if head == "own-head" else f"head-{head}", cert_tag, entry_tag)
    return tag, ViewChange(sender=sender, view=view, final_height=final_height, final_hash=final_hash,
                           final_certificate=final_certificate, entry_view=entry_view, entry_block=entry_block,
                           entry_certificate=entry_certificate)


def _consensus(rng: random.Random, insider: Insider, situation: Situation, kind: str) -> tuple[str, Message]:
    view_tag, view = _near(rng, situation.view, VIEW_MAX)
    height_tag, height = _near(rng, situation.height + 1, HEIGHT_MAX)
    sender_tag, sender = _sender(rng, insider)
    tags = [view_tag and f"view-{view_tag}", height_tag and f"height-{height_tag}", sender_tag]
    message: Message
    if kind == "suspect":
        message = Suspect(sender=sender, view=view)
        tags = tags[::2]
    elif kind == "prepare":
        block_tag, raw = _raw_block(rng, insider, situation, height, view)
        block_hash = _hash_of(raw)
        vote = insider.vote(view, height, block_hash) if rng.random() < 0.5 else rng.randbytes(64)
        message = Prepare(sender=sender, view=view, height=height, block=raw, vote=vote)
        tags.append(block_tag)
    elif kind in ("commit", "committed"):
        _, block = block_at(rng, insider, situation, height, view)
        hash_tag, block_hash = _hash(rng, situation, block.hash)
        tags.append(hash_tag)
        if kind == "commit":
            message = Commit(sender=sender, view=view, height=height, block_hash=block_hash,
                             vote=insider.vote(view, height, block_hash))
        else:
            cert_tag, certificate = certificate_for(rng, insider, situation, view, height, block_hash)
            holds = insider.final_signature(view, height, block_hash) if rng.random() < 0.8 else rng.randbytes(64)
            message = Committed(sender=sender, view=view, height=height, block_hash=block_hash,
                                certificate=certificate, holds=holds)
            tags.append(cert_tag)
    elif kind == "final":
        with_block = rng.random() < 0.5
        block_tag, block = block_at(rng, insider, situation, height, view)
        cert_tag, certificate = certificate_for(rng, insider, situation, view, height, block.hash)
        message = Final(sender=sender, height=height, block_hash=block.hash, certificate=certificate,
                        block=rlp.encode(block) if with_block else b"")
        tags = [tags[1], sender_tag, block_tag if with_block else "no-block", cert_tag]
    elif kind == "view_change":
        tag, message = _view_change(rng, insider, situation, view)
        tags = [tags[0], tag]
    elif kind == "vc_final":
        count = rng.choice([0, 1, *[insider.n - insider.t] * 3, *[insider.n] * 3, insider.n + 1])
        nested = [_view_change(rng, insider, situation, view, tame=k > 0 and rng.random() < 0.7)
                  for k in range(count)]
        view_changes = []
        for _, vc in nested:
            _, signed = _signed(vc, insider, rng)
            assert isinstance(signed, ViewChange)
            view_changes.append(signed)
        replayed = [vc for vc in situation.view_changes.values() if vc.view == view]
        if replayed and rng.random() < 0.5:
            # The insider's own VIEW-CHANGE and the real ones it received: a VC-FINAL that
            # holds, from the primary of the new view the others wait in.
            own = _view_change(rng, insider, situation, view, tame=True)[1].signed(insider.key)
            assert isinstance(own, ViewChange)
            view_changes = [own, *replayed]
            tags.append("replayed-vcs")
        tags += [f"{len(view_changes)}-vcs", *sorted({tag for tag, _ in nested if tag != "well-formed"})[:3]]
        message = VcFinal(sender=sender, view=view, view_changes=tuple(view_changes))
    elif kind == "vc_confirm":
        # A digest of no set (or of a set it made up): members must refuse it, not stall.
        message = VcConfirm(sender=sender, view=view, digest=rng.randbytes(32))
    elif kind == "fault":
        message, tag = _fault(rng, insider, situation, view, height)
        tags.append(tag)
    else:
        assert kind == "new_view"
        block_tag, raw = ("no-pick", b"") if rng.random() < 0.5 else \
            _raw_block(rng, insider, situation, situation.height + 1, view)
        vote = b"" if not raw else insider.vote(view, situation.height + 1, _hash_of(raw))
        if rng.randint(0, 9) == 0:
            vote = b"" if raw else rng.randbytes(64)  # the pair that must match
            block_tag = _tags(block_tag, "vote-mismatch")
        message = NewView(sender=sender, view=view, final_height=height - 1 if height > 0 else 0,
                          final_hash=situation.head_hash, block=raw, vote=vote)
        tags.append(block_tag)
    return _tags(*tags), message


def _fault(rng: random.Random, insider: Insider, situation: Situation, view: int,
           height: int) -> tuple[FaultNotice, str]:
    """A FAULT notice accusing anyone: two votes (the insider's real ones when it accuses
    itself, else forged), or a VIEW-CHANGE with a certificate that may or may not prove a
    state loss. Honest replicas name nobody on it unless the proof holds."""
    accused = rng.choice([insider.index, insider.index, 0, insider.n - 1])
    if rng.random() < 0.5:
        hash_a, hash_b = sorted((rng.randbytes(32), rng.randbytes(32)))
        own = accused == insider.index and rng.random() < 0.5
        vote_a, vote_b = (insider.vote(view, height, hash_a), insider.vote(view, height, hash_b)) if own \
            else (rng.randbytes(64), rng.randbytes(64))
        return FaultNotice(sender=insider.index, kind="fork", accused=accused, view=view, height=height,
                           hash_a=hash_a, vote_a=vote_a, hash_b=hash_b, vote_b=vote_b, certificate=b"",
                           view_changes=()), "fork" + ("-own" if own else "")
    _, vc = _view_change(rng, insider, situation, min(view + 1, UINT_MAX), tame=True)
    vc = dataclasses.replace(vc, sender=accused)
    signed = vc.signed(insider.key)
    assert isinstance(signed, ViewChange)
    block_hash = situation.head_hash
    _, certificate = certificate_for(rng, insider, situation, view, height, block_hash)
    return FaultNotice(sender=insider.index, kind="state-loss", accused=accused, view=view, height=height,
                       hash_a=block_hash, vote_a=b"", hash_b=b"", vote_b=b"", certificate=certificate,
                       view_changes=(signed,)), "state-loss"


def _hash_of(raw: bytes) -> bytes:
    try:
        block: Block = rlp.decode(raw, Block)
        return block.hash
    except (rlp.exceptions.RLPException, TypeError, ValueError):
        return bytes(32)


def _sync(rng: random.Random, insider: Insider, situation: Situation, kind: str) -> tuple[str, dict[str, Any]]:
    if kind == "sync_status":
        tag, height = _near(rng, situation.height, HEIGHT_MAX)
        return _tags(tag and f"height-{tag}"), {"type": kind, "height": height,
                                                "block_hash": situation.head_hash}
    if kind == "sync_request":
        tag, from_height = _near(rng, situation.height, HEIGHT_MAX)
        count = rng.choice([1, 8, 10**6, UINT_MAX, 0])
        return _tags(tag and f"from-{tag}", f"count-{count}" if count > 8 else ""), \
            {"type": kind, "from_height": from_height, "count": count}
    choice = rng.choice(["crafted"] * 3 + ["replayed"] * 2 + ["wrong-parent"] * 2 +
                        ["uncertified", "garbage", "limit", "past-limit"])
    blocks: list[bytes] = []
    if choice == "replayed" and situation.finals:
        blocks = [raw for _, raw in sorted(situation.finals.items())]
    elif choice in ("crafted", "wrong-parent", "uncertified"):
        for k in range(rng.randint(1, 8)):
            view = situation.view
            _, block = block_at(rng, insider, situation, situation.height + 1 + k, view)
            if choice == "wrong-parent":
                block = block.copy(header=block.header.copy(parent_hash=rng.randbytes(32)))
            block_hash = block.hash
            _, certificate = certificate_for(rng, insider, situation, view, block.number, block_hash)
            try:
                certified = [rlp.decode(certificate, CommitCertificate)] if choice != "uncertified" else []
            except rlp.exceptions.RLPException:
                certified = []
            blocks.append(rlp.encode(block.copy(certificate=certified)))
    elif choice == "garbage":
        blocks = [rng.randbytes(rng.randrange(1, 100)) for _ in range(rng.randint(1, 4))]
    else:
        count = RESPONSE_BLOCKS_MAX + (choice == "past-limit")
        replay = [raw for _, raw in sorted(situation.finals.items())] or [b"\xc0"]
        blocks = [replay[k % len(replay)] for k in range(count)]
    tag, from_height = _near(rng, situation.height + 1, HEIGHT_MAX)
    return _tags(choice, tag and f"from-{tag}"), {"type": kind, "from_height": from_height, "blocks": blocks}


JUNK_VALUES = [None, True, -1, 2**64 - 1, 1.5, "x", b"", b"\x00" * 65, [], {}, [b"\x01"] * 300, {"type": "suspect"}]


@st.composite
def crafted(draw: Any, insider: Insider, situation: Situation,
            kinds: tuple[str, ...] = CONSENSUS_TYPES + SYNC_TYPES) -> tuple[str, dict[str, Any]]:
    """One crafted message: ("<type>/<mutation>", wire dict). Hypothesis draws the type
    and a seed; the mutations come from a random.Random of that seed, with the weights
    written here (hypothesis' own draws lean on boundary values, which would send most
    cases to the decoder's refusals, and its buffer would not hold thousands of them)."""
    kind = draw(st.sampled_from(kinds))
    return craft(random.Random(draw(st.integers(0, 2**64 - 1))), insider, situation, kind)


def craft(rng: random.Random, insider: Insider, situation: Situation, kind: str) -> tuple[str, dict[str, Any]]:
    if kind in SYNC_TYPES:
        tag, wire = _sync(rng, insider, situation, kind)
    else:
        tag, message = _consensus(rng, insider, situation, kind)
        sign_tag, message = _signed(message, insider, rng)
        tag = _tags(tag if tag != "well-formed" else "", sign_tag)
        wire = message.to_wire()
        if kind == "vc_final" and wire["view_changes"] and rng.randint(0, 9) == 0:
            wire["view_changes"][-1] = rng.choice(JUNK_VALUES[:6] + [Suspect(
                sender=insider.index, view=situation.view).signed(insider.key).to_wire()])
            tag = _tags(tag, "nested-junk")
    if rng.randint(0, 29) == 0:  # one field of the wrong type, or one field too many or too few
        name = rng.choice(sorted(wire))
        action = rng.choice(["retype", "drop", "extra"])
        if action == "retype" and name != "type":
            wire[name] = rng.choice(JUNK_VALUES)
        elif action == "drop" and name != "type":
            del wire[name]
        else:
            wire["zz"] = 1
        tag = _tags(tag if tag != "well-formed" else "", f"field-{action}")
    return f"{kind}/{tag}", wire
