"""The node loop outlives anything a peer sends (docs/consensus.md "A peer's error"):
malformed messages are counted by reason, and a message whose handling raises is counted
by kind, logged (its traceback the first time), and gets its peer disconnected."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections import Counter
from pathlib import Path

import pytest
import rlp

import runtime.node
from chain import InvalidTransaction, LedgerError, Transaction, TxReason
from consensus.messages import Suspect
from contracts.addresses import TOKEN
from crypto import KeyPair
from faults.craft import Insider, Situation, block_at
from p2p.counters import PEER_ERROR
from runtime.cluster import account_keys, free_base_port, init_cluster
from runtime.config import NodeConfig
from runtime.node import Node


@pytest.fixture
def node(tmp_path: Path):
    layout = init_cluster(tmp_path / "cluster", 3, free_base_port(), accounts=1)
    node = Node(NodeConfig.load(layout.node_dir(0) / "node.toml"))
    yield node
    node.store.close()


def _metric(node: Node, name: str) -> dict[str, float]:
    values = {}
    for line in node.metrics.render().decode().splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            values[labels[len(name):]] = float(value)
    return values


def test_a_handler_exception_disconnects_the_peer_and_the_node_goes_on(node, monkeypatch, caplog):
    peer = node.bookkeepers[1]
    disconnected: list[tuple[bytes, str]] = []
    monkeypatch.setattr(node.network, "disconnect", lambda p, reason: disconnected.append((p, reason)))

    def broken(*args: object) -> list:
        raise RuntimeError("a handler bug")

    assert node.replica is not None
    monkeypatch.setattr(node.replica, "on_message", broken)
    suspect = Suspect(sender=1, view=0).signed(node.key).to_wire()  # signature is the replica's job
    with caplog.at_level(logging.WARNING, logger="gridchain.node"):
        for _ in range(3):
            node._handle_guarded(peer, suspect, 0)
    assert disconnected == [(peer, PEER_ERROR)] * 3
    assert _metric(node, "gridchain_peer_message_errors_total") == {'{kind="suspect"}': 3.0}
    lines = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(lines) == 3 and [bool(r.exc_info) for r in lines] == [True, False, False], \
        "the traceback once per kind (runtime/logfilter.py rate-limits the lines)"


def test_malformed_messages_are_counted_by_a_bounded_reason(node):
    peer = node.bookkeepers[1]
    for height in range(5):  # free text (heights) must not become label values
        node._handle_guarded(peer, {"type": "sync_status", "height": 2**63 + height,
                                         "block_hash": bytes(32)}, 0)
    node._handle_guarded(peer, {"type": "suspect", "sender": 99, "epoch": node.epoch.start, "view": 0,
                                "signature": bytes(64)}, 0)
    node._handle_guarded(peer, {"type": "zzz"}, 0)
    assert _metric(node, "gridchain_rejected_messages_total") == {
        '{reason="out-of-range"}': 5.0, '{reason="unknown-sender"}': 1.0, '{reason="unknown-type"}': 1.0}
    assert _metric(node, "gridchain_peer_message_errors_total") == {}


def test_a_relayed_transaction_whose_admission_raises_is_a_peer_error_too(node, monkeypatch):
    peer = node.bookkeepers[2]
    disconnected: list[bytes] = []
    monkeypatch.setattr(node.network, "disconnect", lambda p, reason: disconnected.append(p))

    def broken(tx: Transaction) -> None:
        raise KeyError("an admission bug")

    monkeypatch.setattr(node, "_admit", broken)
    key = KeyPair.generate()
    for nonce in range(2):
        tx = Transaction.create(key, chain_id=node.genesis.chain_id, nonce=nonce, to=bytes(20), method="transfer")
        node._queue_relayed(peer, rlp.encode(tx))
    node._admit_backlog_chunk(0)  # the loop's turn: nothing escapes
    assert disconnected == [peer, peer]
    assert _metric(node, "gridchain_peer_message_errors_total") == {'{kind="txs"}': 2.0}


def test_a_transaction_refused_while_the_pool_was_full_is_taken_when_offered_again(node, tmp_path):
    """A "not now" is not remembered as a rejection: a pool that refused a nonce's filler
    for good kept its sender's later transactions behind a gap (bench.overload at 100,000)."""
    peer = node.bookkeepers[1]
    sender = account_keys(tmp_path / "cluster")[0]
    first, second = (Transaction.create(sender, chain_id=node.genesis.chain_id, nonce=n, to=TOKEN,
                                        method="transfer", args=[sender.address, 1]) for n in range(2))
    roomy = node.mempool.limits
    node.mempool.limits = dataclasses.replace(roomy, txs_max=1, future_txs_max=0)
    for tx in (first, second):
        node._queue_relayed(peer, rlp.encode(tx))
    node._admit_backlog_chunk(0)
    assert first.hash in node.mempool and second.hash not in node.mempool
    assert _metric(node, "gridchain_rejected_transactions_total") == {'{reason="mempool-full"}': 1.0}
    node.mempool.limits = roomy
    node._queue_relayed(peer, rlp.encode(second))  # re-announced by its sender's node
    node._admit_backlog_chunk(0)
    assert second.hash in node.mempool


def test_a_full_pool_refuses_a_relayed_copy_before_decoding_it(node, tmp_path, monkeypatch):
    """A backlog's copies keep coming while the pool stays full: each refusal must cost a
    length check, not a decode and a signature check (bench.overload at 100,000)."""
    peer = node.bookkeepers[1]
    sender = account_keys(tmp_path / "cluster")[0]
    first, second = (Transaction.create(sender, chain_id=node.genesis.chain_id, nonce=n, to=TOKEN,
                                        method="transfer", args=[sender.address, 1]) for n in range(2))
    node.mempool.limits = dataclasses.replace(node.mempool.limits, txs_max=1, future_txs_max=0)
    node._queue_relayed(peer, rlp.encode(first))
    node._admit_backlog_chunk(0)
    decoded: list[bytes] = []
    real_decode = runtime.node.decode
    monkeypatch.setattr(runtime.node, "decode", lambda raw, kind: decoded.append(raw) or real_decode(raw, kind))
    node._queue_relayed(peer, rlp.encode(second))
    node._admit_backlog_chunk(0)
    assert second.hash not in node.mempool and decoded == []
    assert _metric(node, "gridchain_rejected_transactions_total") == {'{reason="mempool-full"}': 1.0}


def test_a_node_far_behind_its_peers_refuses_transactions_as_syncing(node, tmp_path, monkeypatch):
    """Its nonces are stale: a client asking it for a pending nonce gets a used one, and
    the transaction it admits no block can take (insider-bigblock, after a restart). A
    Byzantine bookkeeper announcing a far-ahead height must not make it refuse everyone."""
    peer = node.bookkeepers[1]
    sender = account_keys(tmp_path / "cluster")[0]
    tx = Transaction.create(sender, chain_id=node.genesis.chain_id, nonce=0, to=TOKEN, method="transfer",
                            args=[sender.address, 1])
    other = node.bookkeepers[2]
    monkeypatch.setattr(node.network, "connected_peers", lambda: [peer, other])
    far = node.chain.height + node.config.mempool.behind_blocks_max + 1
    node.peer_heights[peer] = node.peer_heights[other] = far  # t + 1 = 2 bookkeepers vouch for it
    with pytest.raises(InvalidTransaction) as refused:
        asyncio.run(asyncio.wait_for(node.submit(tx), 10))  # refused at once, never queued
    assert refused.value.reason == TxReason.SYNCING and tx.hash not in node.mempool
    node.peer_heights[other] = node.chain.height  # now one bookkeeper's far-ahead claim alone: a liar's

    async def admitted() -> None:
        waiting = asyncio.ensure_future(node.submit(tx))
        await asyncio.sleep(0)
        node._handle_submissions(node.submissions.get_nowait(), 0)
        await waiting

    asyncio.run(admitted())
    assert tx.hash in node.mempool


def test_crafted_blocks_meet_only_ledger_errors_in_the_real_ledger(node):
    # What a Byzantine primary's PREPARE or NEW-VIEW hands app.check: valid-looking blocks on
    # the head with one bad part, junk transactions among them (faults/craft.py).
    insider = Insider(0, node.key, len(node.bookkeepers), node.genesis.chain_id)
    head = node.chain.block(node.chain.height)
    situation = Situation(view=0, height=node.chain.height, head_hash=head.hash,
                          state_root=head.header.state_root, timestamp_ms=head.header.timestamp_ms)
    outcomes: Counter[str] = Counter()
    for seed in range(200):
        tag, block = block_at(random.Random(seed), insider, situation, situation.height + 1, 0)
        try:
            node.app.check(block)
            outcomes["executes"] += 1
        except LedgerError:
            outcomes[tag or "well-formed"] += 1
    assert outcomes["block-transactions"] > 0, outcomes  # junk transactions were executed, and refused
    assert node.chain.height == situation.height


def test_relay_messages_beyond_what_txrelay_sends_are_refused_without_work(node, monkeypatch) -> None:
    """A `tx_get` of 65,536 hashes (amplification), a `txs` of 10,000 entries, and a 1 MiB
    string posing as a transaction: refused or dropped before any decoding or hashing."""
    peer = node.bookkeepers[1]
    sent: list = []
    monkeypatch.setattr(node.network, "send", lambda p, message: sent.append(message) or True)
    node._handle_guarded(peer, {"type": "tx_get", "hashes": [b"\x01" * 32] * 65_536}, 0)
    node._handle_guarded(peer, {"type": "txs", "raw": [b"\x80"] * 10_000}, 0)
    assert _metric(node, "gridchain_rejected_messages_total") == {'{reason="bad-relay-message"}': 2.0}
    node._handle_guarded(peer, {"type": "txs", "raw": [b"\x00" * (1 << 20)]}, 0)
    assert not node.backlog and not sent
    assert _metric(node, "gridchain_rejected_transactions_total") == {'{reason="oversize"}': 1.0}


def test_a_peer_repeating_tx_get_is_held_to_its_budget(node, monkeypatch) -> None:
    """Each `tx_get` is bounded (4,096 hashes), but a peer may repeat it as fast as it
    writes: past its per-second budget the requests are dropped and counted, unanswered."""
    peer = node.bookkeepers[1]
    looked_up: list[bytes] = []
    monkeypatch.setattr(node, "_pending_raw", lambda h: looked_up.append(h) or b"\xc0")
    monkeypatch.setattr(node.network, "send", lambda p, message: True)
    request = {"type": "tx_get", "hashes": [bytes([i % 256]) * 32 for i in range(4_096)]}
    for _ in range(100):
        node._handle_guarded(peer, request, 0)
    limits = node.config.relay
    assert len(looked_up) == limits.peer_hashes_burst_max  # 16 requests; the other 84 cost nothing
    assert _metric(node, "gridchain_rejected_messages_total") == {'{reason="relay-rate"}': 84.0}


def test_a_peer_repeating_snapshot_part_requests_is_held_to_its_budget(node, monkeypatch) -> None:
    """Each part request is one small message, but its answer is up to a 64 KiB chunk (or a
    block) read from disk: past its `[snapshot] serve_bytes_*` budget a peer's requests are
    dropped unanswered and counted; the budget refills with time, and is per peer."""
    greedy, other = node.bookkeepers[1], node.bookkeepers[2]
    chunk = b"\x01" * (64 << 10)
    read: list[int] = []
    monkeypatch.setattr(node.snapshots, "part", lambda height, part: read.append(part) or chunk)
    answered: list[tuple[bytes, int]] = []
    monkeypatch.setattr(node.network, "send", lambda p, message: answered.append((p, message["part"])) or True)
    for part in range(200):
        node._handle_guarded(greedy, {"type": "snapshot_part_request", "height": 4, "part": part}, 0)
    limits = node.config.snapshot
    burst = limits.serve_bytes_burst_max // len(chunk)  # 128 chunks at once
    assert [p for _, p in answered] == list(range(burst))
    assert len(read) == burst  # once the budget is spent nothing is even read for a request
    assert _metric(node, "gridchain_rejected_messages_total") == {'{reason="snapshot-rate"}': 200.0 - burst}
    node._handle_guarded(other, {"type": "snapshot_part_request", "height": 4, "part": 0}, 0)
    assert answered[-1] == (other, 0)  # another peer has its own budget
    answered.clear()
    for part in range(200):  # a second later, a second's worth more
        node._handle_guarded(greedy, {"type": "snapshot_part_request", "height": 4, "part": part}, 1_000)
    assert len(answered) == limits.serve_bytes_per_s_max // len(chunk)
