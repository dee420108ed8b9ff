"""A peer's message costs no block decode until its cheap fields say the block is of use
(consensus/admission.py): a frame-sized PREPARE from a bookkeeper that is not the primary,
or of a future view from anyone but that view's primary, is refused or held with its block
undecoded; what is still decoded is charged to the sender's decode budget. The proof is
structural: the block decoder is replaced by one that fails the test."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
import rlp

from chain import Block, BlockHeader, CommitCertificate, Transaction, Vote
from chain.certificate import commit_message
from chain.types import EMPTY_TRIE_ROOT
from consensus import ConsensusConfig, Rejected, Replica, Send, Suspected, message_from_wire, messages
from consensus.actions import Action, Check
from consensus.admission import DecodeBudget, role_refusal, wire_refusal
from consensus.errors import RejectReason
from consensus.loop import settle
from consensus.messages import Commit, Final, Message, Prepare, RecentBlocks, Suspect, ViewChange
from consensus.simulation import CHAIN_ID, CLOCK_EPOCH_MS, FakeLedger
from consensus.storage import INITIAL_STATE
from crypto import KeyPair
from runtime.cluster import free_base_port, init_cluster
from runtime.config import NodeConfig
from runtime.node import Node

N, T = 3, 1  # groups: view 0 (0, 1), view 1 (1, 2), view 2 (2, 0); the primary first
KEYS = [KeyPair.from_seed(bytes([i + 1]) * 32) for i in range(N)]
BIG_BYTES_MIN = 3_500_000


@pytest.fixture(scope="module")
def big_block() -> bytes:
    """A frame-sized block of 24,000 small transactions (what the insider-bigblock fault sends)."""
    tx = Transaction.create(KEYS[2], chain_id=CHAIN_ID, nonce=0, to=bytes(20), method="transfer",
                            args=[bytes(20), 1])
    header = BlockHeader(bytes(32), 1, CLOCK_EPOCH_MS, 2, 0, bytes(32), EMPTY_TRIE_ROOT, EMPTY_TRIE_ROOT, 0, b"")
    raw = Block(header, [tx.copy(nonce=k) for k in range(24_000)], []).encoded()
    assert len(raw) >= BIG_BYTES_MIN
    return raw


@pytest.fixture(autouse=True)
def fresh_recent_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """No block decoded by another test is known here (a known one costs nothing)."""
    monkeypatch.setattr(messages, "RECENT_BLOCKS", RecentBlocks(count_max=16, bytes_max=32 << 20))


@pytest.fixture
def no_block_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: RecentBlocks, raw: bytes) -> None:
        raise AssertionError(f"a block of {len(raw)} bytes was decoded")
    monkeypatch.setattr(RecentBlocks, "decode", refuse)


def _replica(index: int, budget: DecodeBudget | None = None) -> tuple[Replica, FakeLedger]:
    ledger = FakeLedger(None)
    replica = Replica(ConsensusConfig(t=T), index=index, key=KEYS[index],
                      bookkeepers=[k.public_key for k in KEYS], chain_id=CHAIN_ID, app=ledger,
                      stored=INITIAL_STATE, decode_budget=budget)
    replica.start(0, CLOCK_EPOCH_MS)
    return replica, ledger


def _settled(replica: Replica, ledger: FakeLedger, actions: list[Action], now_ms: int) -> list[Action]:
    """What the node carries out, the ledger having built or executed what was asked for."""
    return settle(replica, ledger, actions, lambda: now_ms, lambda: CLOCK_EPOCH_MS + now_ms)


def _wire(message: Message, key: KeyPair) -> dict:
    """Signed and through msgpack, as the node's p2p reader hands it over."""
    return msgpack.unpackb(msgpack.packb(message.signed(key).to_wire(), use_bin_type=True), raw=False)


def _prepare(sender: int, view: int, height: int, block: bytes) -> dict:
    return _wire(Prepare(sender=sender, view=view, height=height, block=block, vote=bytes(64)), KEYS[sender])


@pytest.mark.parametrize("kind, view, sender, receiver, reason", [
    ("prepare", 0, 0, 1, None),  # the primary to its follower
    ("prepare", 0, 1, 0, RejectReason.NOT_FROM_PRIMARY),  # the follower
    ("prepare", 0, 2, 1, RejectReason.NOT_FROM_PRIMARY),  # a passive replica
    ("prepare", 0, 0, 2, RejectReason.NOT_ADDRESSED),  # to a passive replica
    ("prepare", 2, 2, 0, None),  # a future view's primary
    ("prepare", 1, 2, 1, RejectReason.NOT_FROM_PRIMARY),  # a future view, not its primary
    ("new_view", 1, 1, 2, None),
    ("new_view", 1, 2, 1, RejectReason.NOT_FROM_PRIMARY),
    ("commit", 0, 1, 0, None),
    ("commit", 0, 2, 0, RejectReason.NOT_A_MEMBER),
    ("vc_final", 1, 0, 1, RejectReason.NOT_A_MEMBER),
    ("vc_confirm", 1, 2, 0, RejectReason.NOT_ADDRESSED),
    ("view_change", 1, 0, 2, None),
    ("view_change", 1, 1, 0, RejectReason.NOT_ADDRESSED),
    ("final", 0, 2, 1, None),  # of no view: its certificate is checked before its block
    ("suspect", 0, 2, 1, None),  # forwarded for its author: the replica checks the author
])
def test_who_may_send_what_to_whom(kind, view, sender, receiver, reason):
    assert role_refusal(kind, view, sender, receiver, N, T) is reason


def test_a_non_primary_prepare_of_four_mib_is_refused_without_decoding(big_block, no_block_decoding):
    wire = _prepare(2, 0, 1, big_block)
    assert wire_refusal(wire, 1, N, T) is RejectReason.NOT_FROM_PRIMARY  # the node's check, off the wire
    # Past the node, the replica refuses it on the same rule, its block still undecoded.
    replica, _ = _replica(1)
    actions = replica.on_message(2, message_from_wire(wire, N), 10, CLOCK_EPOCH_MS)
    assert [a.reason for a in actions if isinstance(a, Rejected)] == [RejectReason.NOT_FROM_PRIMARY]
    assert not any(isinstance(a, Suspected | Send) for a in actions)  # bookkeeper 2 is outside view 0


def test_a_future_view_prepare_is_held_undecoded_from_that_views_primary_only(big_block, no_block_decoding):
    replica, _ = _replica(2)  # passive in view 0, the follower of view 1
    from_primary, not_primary = _prepare(1, 1, 1, big_block), _prepare(0, 1, 1, big_block)
    assert wire_refusal(from_primary, 2, N, T) is None
    assert wire_refusal(not_primary, 2, N, T) is RejectReason.NOT_FROM_PRIMARY
    for sender, wire in ((1, from_primary), (0, not_primary)):
        assert replica.on_message(sender, message_from_wire(wire, N), 10, CLOCK_EPOCH_MS) == []
    assert [m.sender for m in replica._future.values()] == [1]  # held (raw) for view 1
    # View 1 is reached: the PREPARE waits for the NEW-VIEW, still undecoded.
    suspect = message_from_wire(_wire(Suspect(sender=0, view=0), KEYS[0]), N)
    replica.on_message(0, suspect, 20, CLOCK_EPOCH_MS)
    assert replica.view == 1 and not replica._future


def test_a_node_drops_a_non_primary_prepare_before_decoding_it(tmp_path: Path, big_block, no_block_decoding):
    layout = init_cluster(tmp_path / "cluster", 3, free_base_port(), accounts=1)
    node = Node(NodeConfig.load(layout.node_dir(0) / "node.toml"))
    try:
        # Not even the signature is looked at: bookkeeper 2 never sends view 0's PREPARE.
        wire = Prepare(sender=2, view=0, height=1, block=big_block, vote=bytes(64), signature=bytes(64)).to_wire()
        node._handle_guarded(node.bookkeepers[2], wire, 0)
        # Blocks from a peer this node asked nothing of are not decoded either.
        node._handle_guarded(node.bookkeepers[1], {"type": "sync_response", "from_height": 1,
                                                   "blocks": [big_block]}, 0)
        # Asked, a peer's answer is charged to its budget (8 MiB by default) before it is decoded.
        node.sync.request(node.bookkeepers[1], 5, 0)
        node._handle_guarded(node.bookkeepers[1], {"type": "sync_response", "from_height": 1,
                                                   "blocks": [big_block] * 3}, 0)
        rejected = [line for line in node.metrics.render().decode().splitlines()
                    if line.startswith("gridchain_rejected_messages_total{")]
        assert sorted(rejected) == [f'gridchain_rejected_messages_total{{reason="{reason}"}} 1.0'
                                    for reason in ("decode-budget", "not-from-primary", "unsolicited")]
    finally:
        node.store.close()


def test_the_decode_budget_refills_at_its_rate_up_to_its_burst():
    budget = DecodeBudget(rate_bytes_per_s=1_000, burst_bytes=3_000)
    peer, other = b"a" * 32, b"b" * 32
    assert budget.take(peer, 3_000, 0)
    assert not budget.take(peer, 1, 0)  # empty
    assert budget.take(other, 3_000, 0)  # each peer its own bucket
    assert not budget.take(peer, 1_001, 1_000) and budget.take(peer, 1_000, 1_000)
    assert budget.take(peer, 3_000, 60_000) and not budget.take(peer, 1, 60_000)  # refilled to the burst only


def test_a_primarys_block_over_its_decode_budget_is_dropped_not_suspected():
    proposer = FakeLedger(None)
    proposer.mempool[b"tx"] = None
    block = proposer.propose(1, 0, 0, CLOCK_EPOCH_MS + 1)
    assert block is not None
    raw = block.encoded()
    vote = KEYS[0].sign(commit_message(CHAIN_ID, 0, 1, block.hash))
    prepare = Prepare(sender=0, view=0, height=1, block=raw, vote=vote)
    budget = DecodeBudget(rate_bytes_per_s=len(raw), burst_bytes=len(raw))
    assert budget.take(KEYS[0].public_key, len(raw), 10)  # the primary spent its bucket
    follower, ledger = _replica(1, budget)
    actions = follower.on_message(0, message_from_wire(_wire(prepare, KEYS[0]), N), 10, CLOCK_EPOCH_MS + 10)
    assert [a.reason for a in actions if isinstance(a, Rejected)] == [RejectReason.DECODE_BUDGET]
    assert not any(isinstance(a, Suspected | Send | Check) for a in actions)
    # Its retransmission a second later fits the refilled bucket: the follower votes.
    actions = _settled(follower, ledger, follower.on_message(0, message_from_wire(_wire(prepare, KEYS[0]), N),
                                                             1_010, CLOCK_EPOCH_MS + 1_010), 1_010)
    assert [a.message.TYPE for a in actions if isinstance(a, Send)] == [Commit.TYPE]
    # A block of use (it executes: the follower voted) is the chain's work: given back.
    assert budget.take(KEYS[0].public_key, len(raw), 1_010)


def test_an_invalid_proposal_is_charged_and_a_valid_one_given_back():
    proposer = FakeLedger(None)
    proposer.mempool[b"tx"] = None
    block = proposer.propose(1, 0, 0, CLOCK_EPOCH_MS + 1)
    assert block is not None
    bad = block.copy(header=block.header.copy(state_root=bytes(32)))  # does not execute
    budget = DecodeBudget(rate_bytes_per_s=1, burst_bytes=10 * len(block.encoded()))
    for candidate, charged in ((block, False), (bad, True)):
        follower, ledger = _replica(1, budget)
        vote = KEYS[0].sign(commit_message(CHAIN_ID, 0, 1, candidate.hash))
        prepare = Prepare(sender=0, view=0, height=1, block=candidate.encoded(), vote=vote)
        _settled(follower, ledger, follower.on_message(0, message_from_wire(_wire(prepare, KEYS[0]), N), 10,
                                                       CLOCK_EPOCH_MS + 10), 10)
        left = budget.burst_bytes - len(candidate.encoded()) * charged
        assert budget.take(KEYS[0].public_key, left, 10) and not budget.take(KEYS[0].public_key, 1, 10)
        budget.give_back(KEYS[0].public_key, budget.burst_bytes)


def _forged_certificate(view: int) -> bytes:
    """The shape of a real certificate (t + 1 votes of the group), signatures forged."""
    return rlp.encode(CommitCertificate(view, [Vote(0, bytes(64)), Vote(1, bytes(64))], []))


def test_a_final_is_refused_on_its_forged_certificate_before_its_block_is_decoded(big_block, no_block_decoding):
    replica, _ = _replica(1)
    final = Final(sender=2, height=1, block_hash=bytes(32), certificate=_forged_certificate(0), block=big_block)
    wire = _wire(final, KEYS[2])
    assert wire_refusal(wire, 1, N, T) is None  # FINAL has no view: the replica decides
    actions = replica.on_message(2, message_from_wire(wire, N), 10, CLOCK_EPOCH_MS)
    assert [a.reason for a in actions if isinstance(a, Rejected)] == [RejectReason.BAD_CERTIFICATE]


def test_a_view_change_outside_a_view_change_is_not_decoded(big_block, no_block_decoding):
    view_change = ViewChange(sender=2, view=0, final_height=0, final_hash=bytes(32), final_certificate=b"",
                             entry_view=0, entry_block=big_block, entry_certificate=_forged_certificate(0))
    wire = _wire(view_change, KEYS[2])
    assert wire_refusal(wire, 2, N, T) is RejectReason.NOT_ADDRESSED  # node 2 is outside view 0
    replica, _ = _replica(0)  # a member of view 0, in its normal state: nothing to select
    assert wire_refusal(wire, 0, N, T) is None
    assert replica.on_message(2, message_from_wire(wire, N), 10, CLOCK_EPOCH_MS) == []
