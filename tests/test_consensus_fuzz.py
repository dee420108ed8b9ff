"""Insider attacks on the consensus and sync protocol: messages signed with a real
bookkeeper's key, so they pass the signature check and reach the deep handlers.

The first tests are the reproducers of what an attacker found; the property tests feed
thousands of crafted messages (faults/craft.py) into the replicas and block sync of a
simulated cluster and check that only the typed rejection path is ever taken and that the
honest replicas stay consistent and live afterwards.
"""

from __future__ import annotations

from collections import Counter

import msgpack
import pytest
import rlp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from chain import Block, BlockHeader, CommitCertificate, Vote
from chain.certificate import commit_message, synchronous_group
from chain.types import EMPTY_TRIE_ROOT
from consensus import CatchUp, InvalidMessage, Rejected, message_from_wire
from consensus.errors import DecodeReason, RejectReason
from consensus.messages import HEIGHT_MAX, Commit, Final, NewView, Prepare, Suspect, VcFinal, ViewChange
from consensus.replica import EARLY_BYTES_MAX, EARLY_MESSAGES_MAX
from consensus.simulation import CHAIN_ID, Simulation, state_root_after
from consensus.sync import SyncResponse, SyncStatus
from crypto import keccak256
from faults.craft import CONSENSUS_TYPES, SYNC_TYPES, Insider, Situation, crafted

INSIDER = 1


def _wire(message: object) -> object:
    return msgpack.unpackb(msgpack.packb(message, use_bin_type=True), raw=False)


def test_vc_final_nesting_a_view_change_of_sender_99_crashes_no_replica():
    # Found by an attacker: bookkeeper 1 (a member of view 0's group) signed a VC-FINAL
    # whose second VIEW-CHANGE names sender 99; every honest replica raised IndexError.
    sim = Simulation(t=1, seed=21)
    sim.submit(2)
    sim.run_until(sim.now + 500)
    key = sim.nodes[INSIDER].key
    view = sim.nodes[0].replica.view

    def view_change(sender: int) -> ViewChange:
        vc = ViewChange(sender=sender, view=view, final_height=0, final_hash=bytes(32),
                        final_certificate=b"", entry_view=0, entry_block=b"",
                        entry_certificate=b"").signed(key)
        assert isinstance(vc, ViewChange)
        return vc

    vc_final = VcFinal(sender=INSIDER, view=view,
                       view_changes=(view_change(INSIDER), view_change(99))).signed(key)
    with pytest.raises(InvalidMessage) as info:
        message_from_wire(_wire(vc_final.to_wire()), sim.n)
    assert info.value.reason is DecodeReason.UNKNOWN_SENDER
    # A caller that skipped the decoder (the replica's API takes Message objects) still
    # gets a rejection, not an exception.
    for index in (0, 2):
        sim.nodes[index].replica.on_message(INSIDER, vc_final, sim.now, sim.clock_ms(index))
    sim.run_until(sim.now + 5_000)
    sim.check_consistency()


# --- the structure-aware fuzzer, in process --------------------------------------------

EXAMPLES = 40  # simulated clusters
ROUNDS = 6  # per cluster: a burst of crafted messages, then time and transactions
BURST = 10  # ~2,400 messages in all, each type ~220


def _situation(sim: Simulation, target: int) -> Situation:
    node = sim.nodes[target]
    ledger = node.ledger
    head = ledger.blocks[-1]
    finals = {block.number: rlp.encode(block) for block in ledger.blocks[-4:] if block.number > 0}
    return Situation(view=node.replica.view, height=ledger.final_height(), head_hash=head.hash,
                     state_root=head.header.state_root, finals=finals, timestamp_ms=head.header.timestamp_ms)


def _good_block(sim: Simulation, situation: Situation, insider: int) -> bytes:
    """A block the fake ledger accepts (its state root is keccak(parent root || extra))."""
    extra = rlp.encode([b"insider"])
    header = BlockHeader(situation.head_hash, situation.height + 1, situation.timestamp_ms + 1, insider,
                         situation.view, state_root_after(situation.state_root, extra), keccak256(extra),
                         EMPTY_TRIE_ROOT, 0, extra)
    return rlp.encode(Block(header, [], []))


def test_thousands_of_insider_messages_take_only_the_rejection_path():
    outcomes: Counter[str] = Counter()

    # No shrinking: a failure prints its draws (seed, insider, every message), and
    # shrinking a run of simulated clusters takes minutes.
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(t=st.sampled_from([1, 1, 2]), seed=st.integers(0, 2**16), insider=st.integers(0, 4),
           data=st.data())
    def run(t: int, seed: int, insider: int, data: st.DataObject) -> None:
        sim = Simulation(t=t, seed=seed)
        insider %= sim.n
        who = Insider(insider, sim.nodes[insider].key, sim.n, CHAIN_ID)
        honest = [i for i in range(sim.n) if i != insider]
        sim.submit(3)
        sim.run_until(sim.now + 400)
        for _ in range(ROUNDS):
            target = data.draw(st.sampled_from(honest))
            situation = _situation(sim, target)
            for _ in range(BURST):
                case, wire = data.draw(crafted(who, situation))
                kind = case.split("/")[0]
                outcomes[f"{kind}:sent"] += 1
                if data.draw(st.integers(0, 9)) == 0 and kind == "prepare":
                    wire["block"] = _good_block(sim, situation, insider)  # executes: the handler goes deepest
                try:
                    sim.inject(insider, target, wire)
                except InvalidMessage:
                    outcomes[f"{kind}:refused-at-decode"] += 1
                else:
                    outcomes[f"{kind}:handled"] += 1
            sim.submit(2)
            sim.run_until(sim.now + 150)
        # The insider's own replica stayed honest: after the attack the cluster settles.
        sim.heal()
        sim.run_until(sim.now + 20_000)
        sim.check_consistency()  # the FinalityOracle also checked every finalize on the way
        assert sim.all_done(), f"seed {seed}, t {t}: not live after the attack: {sim.final_heights()}"

    run()
    print("OUTCOMES", sorted(outcomes.items()))
    for kind in CONSENSUS_TYPES + SYNC_TYPES:
        assert outcomes[f"{kind}:sent"] >= 100, (kind, outcomes)
        # Many crafted messages are well formed: they get past the decoder to the handlers
        # (a VC-FINAL is refused when any of its view changes is).
        assert outcomes[f"{kind}:handled"] >= outcomes[f"{kind}:sent"] // 6, (kind, sorted(outcomes.items()))


# --- attacks tried after the fixes, one test each ----------------------------------------

def _settled(t: int = 1, seed: int = 31) -> Simulation:
    sim = Simulation(t=t, seed=seed)
    for _ in range(3):
        sim.submit(3)
        sim.run_until(sim.now + 400)
    assert min(sim.final_heights()) >= 2
    return sim


def test_sync_response_of_blocks_that_decode_but_do_not_link_is_refused_and_its_peer_penalized():
    sim = _settled()
    target = sim.nodes[2]
    head = target.ledger.final_height()
    # The insider claims a higher head, gets asked, and serves certified-looking blocks whose
    # parent is wrong (certificate: its own real vote and a forged one).
    sim.inject(1, 2, SyncStatus(head + 5, bytes(32)).to_wire())
    wrong = [block.copy(header=block.header.copy(parent_hash=keccak256(b"elsewhere")))
             for block in target.ledger.blocks[-2:]]
    sim.inject(1, 2, SyncResponse(head + 1, tuple(rlp.encode(b) for b in wrong)).to_wire())
    assert [r.reason.value for r in target.sync_rejections] in (["parent"], ["not-next"]), target.sync_rejections
    assert target.ledger.final_height() == head
    assert target.sync.request(bytes([1]), head + 5, sim.now) == [], "penalized: not asked again"
    sim.run_until(sim.now + 5_000)
    sim.check_consistency()


def test_commits_for_views_far_ahead_are_held_in_bounded_memory():
    sim = _settled()
    follower = sim.nodes[1]
    replica = sim.nodes[0].replica
    for k in range(1_000):
        view = replica.view + 10 + k * 10**9
        commit = Commit(sender=1, view=view, height=k, block_hash=bytes(32),
                        vote=follower.key.sign(commit_message(CHAIN_ID, view, k, bytes(32))))
        sim.inject(1, 0, commit.signed(follower.key).to_wire())
    assert len(replica._future) <= sim.n * len(CONSENSUS_TYPES), "one stashed message per sender and type"
    sim.run_until(sim.now + 5_000)
    sim.check_consistency()


def test_final_for_a_far_future_height_with_a_forged_certificate_moves_nothing():
    sim = _settled()
    insider = Insider(1, sim.nodes[1].key, sim.n, CHAIN_ID)
    head = sim.nodes[2].ledger.final_height()
    for height in (head + 2, head + 10**6, HEIGHT_MAX):
        block_hash = keccak256(b"%d" % height)
        votes = [Vote(0, bytes(64)), Vote(1, insider.vote(0, height, block_hash))]
        certificate = CommitCertificate(0, votes, [Vote(0, insider.final_signature(0, height, block_hash))])
        final = Final(sender=1, height=height, block_hash=block_hash, certificate=rlp.encode(certificate),
                      block=b"").signed(insider.key)
        actions = sim.nodes[2].replica.on_message(1, final, sim.now, sim.clock_ms(2))
        assert [a.reason for a in actions if isinstance(a, Rejected)] == [RejectReason.BAD_CERTIFICATE]
        assert not any(isinstance(a, CatchUp) for a in actions), "no catch-up towards a forged head"
    sim.run_until(sim.now + 3_000)
    sim.check_consistency()


def test_new_view_with_a_giant_block_is_handled_without_an_exception():
    sim = _settled()
    insider = sim.nodes[0]  # the primary of view 0
    node = sim.nodes[1]
    head = node.ledger.blocks[-1]
    extra = bytes(3 * 1024 * 1024)  # about the p2p frame limit
    header = head.header.copy(parent_hash=head.hash, number=head.number + 1, extra=extra,
                              state_root=state_root_after(head.header.state_root, extra))
    raw = rlp.encode(Block(header, [], []))
    vote = insider.key.sign(commit_message(CHAIN_ID, node.replica.view, head.number + 1, header.hash))
    new_view = NewView(sender=0, view=node.replica.view, final_height=head.number, final_hash=head.hash,
                       block=raw, vote=vote).signed(insider.key)
    node.replica.on_message(0, message_from_wire(_wire(new_view.to_wire()), sim.n), sim.now, sim.clock_ms(1))
    sim.run_until(sim.now + 5_000)
    sim.check_consistency()


def test_prepares_held_during_a_view_change_are_bounded_in_bytes():
    sim = _settled()
    view = sim.nodes[0].replica.view
    current, following = synchronous_group(view, sim.n, sim.t), synchronous_group(view + 1, sim.n, sim.t)
    follower, primary = sim.nodes[following[1]], sim.nodes[following[0]]
    replica = follower.replica
    suspect = Suspect(sender=current[0], view=view).signed(sim.nodes[current[0]].key)
    replica.on_message(current[0], suspect, sim.now, sim.clock_ms(follower.index))
    assert replica.state == "view-change" and replica.view == view + 1
    head = follower.ledger.blocks[-1]
    for k in range(EARLY_MESSAGES_MAX):
        extra = bytes([k]) * (1024 * 1024)
        header = head.header.copy(parent_hash=head.hash, number=head.number + 1, extra=extra)
        block = Block(header, [], [])
        vote = primary.key.sign(commit_message(CHAIN_ID, replica.view, head.number + 1, block.hash))
        prepare = Prepare(sender=primary.index, view=replica.view, height=head.number + 1,
                          block=rlp.encode(block), vote=vote).signed(primary.key)
        replica.on_message(primary.index, prepare, sim.now, sim.clock_ms(follower.index))
    held = sum(message.payload_bytes() for _, message in replica.vs.early)
    assert 0 < held <= EARLY_BYTES_MAX
    sim.run_until(sim.now + 10_000)
    sim.check_consistency()
