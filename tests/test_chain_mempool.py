"""Mempool admission: each rejection is typed, has a reason, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import rlp

from chain import InvalidTransaction, Transaction
from chain.genesis import Genesis
from chain.mempool import Mempool, MempoolLimits
from contracts.addresses import TOKEN
from tests.support import DevChain, genesis_dict, key, open_chain


def _pool(dev: DevChain, **limits: int) -> Mempool:
    genesis = dev.chain.genesis
    return Mempool(genesis.chain_id, genesis.limits, MempoolLimits(**limits), dev.chain.signatures)


def _transfer(sender, nonce: int, chain_id: int, amount: int = 1, **extra) -> Transaction:
    return Transaction.create(sender, chain_id=chain_id, nonce=nonce, to=TOKEN, method="transfer",
                              args=[key(2).address, amount], **extra)


def _rejects(pool: Mempool, tx: Transaction, dev: DevChain) -> str:
    before = (len(pool), pool.size_bytes)
    with pytest.raises(InvalidTransaction) as caught:
        pool.add(tx, dev.chain.state())
    assert (len(pool), pool.size_bytes) == before
    return caught.value.reason


def test_admission_reasons(devchain: DevChain) -> None:
    pool = _pool(devchain, nonce_gap_max=4)
    sender = devchain.accounts[0]
    cid = devchain.chain.genesis.chain_id
    good = _transfer(sender, 0, cid)
    pool.add(good, devchain.chain.state())
    assert _rejects(pool, good, devchain) == "duplicate"
    assert _rejects(pool, _transfer(sender, 0, cid, amount=2), devchain) == "nonce-taken"
    assert _rejects(pool, _transfer(sender, 9, cid), devchain) == "nonce-gap"
    assert _rejects(pool, _transfer(sender, 1, cid + 1), devchain) == "wrong-chain-id"
    forged = _transfer(sender, 1, cid).copy(signature=b"\x00" * 64)
    assert _rejects(pool, forged, devchain) == "bad-signature"
    assert _rejects(pool, _transfer(key(999), 0, cid), devchain) == "unknown-sender"
    huge = Transaction.create(sender, chain_id=cid, nonce=1, to=TOKEN, method="transfer",
                              args=[b"x" * 20_000, 1])
    assert _rejects(pool, huge, devchain) == "oversize"
    assert len(pool) == 1


def test_replayed_nonce_after_commit(devchain: DevChain) -> None:
    pool = _pool(devchain)
    sender = devchain.accounts[0]
    devchain.commit([devchain.tx(sender, TOKEN, "transfer", [key(2).address, 1])])
    assert _rejects(pool, _transfer(sender, 0, devchain.chain.genesis.chain_id, amount=5), devchain) == "nonce-replay"


def test_bounds_by_count_and_bytes(devchain: DevChain) -> None:
    cid = devchain.chain.genesis.chain_id
    pool = _pool(devchain, txs_max=2, future_txs_max=1)
    pool.add(_transfer(devchain.accounts[0], 0, cid), devchain.chain.state())
    pool.add(_transfer(devchain.accounts[1], 0, cid), devchain.chain.state())
    assert _rejects(pool, _transfer(devchain.accounts[2], 0, cid), devchain) == "mempool-full"
    tiny = _pool(devchain, bytes_max=100)
    assert _rejects(tiny, _transfer(devchain.accounts[0], 0, cid), devchain) == "mempool-full"


def test_candidates_follow_nonce_order_and_committed_ones_leave(devchain: DevChain) -> None:
    cid = devchain.chain.genesis.chain_id
    pool = _pool(devchain)
    sender = devchain.accounts[0]
    txs = [_transfer(sender, n, cid) for n in (2, 0, 1)]
    for tx in txs:
        pool.add(tx, devchain.chain.state())
    chosen = pool.candidates(devchain.chain.state(), 10)
    assert [tx.nonce for tx in chosen] == [0, 1, 2]
    executed, _ = devchain.chain.build(chosen[:2], timestamp_ms=devchain.clock_ms + 1, proposer=0, view=0)
    devchain.chain.append(executed.block)
    pool.remove_committed(list(executed.block.transactions), devchain.chain.state())
    assert [tx.nonce for tx in pool.candidates(devchain.chain.state(), 10)] == [2]


class _CountingState:
    """A state that counts account reads: a proposal must cost the block, not the pool."""

    def __init__(self, state) -> None:
        self.state, self.reads = state, 0

    def account(self, address):
        self.reads += 1
        return self.state.account(address)


def test_a_proposal_reads_no_account_of_a_sender_whose_next_nonce_is_pending(devchain: DevChain) -> None:
    cid = devchain.chain.genesis.chain_id
    pool = _pool(devchain)
    for sender in devchain.accounts[:3]:
        for n in range(3):
            pool.add(_transfer(sender, n, cid), devchain.chain.state())
    counting = _CountingState(devchain.chain.state())
    assert len(pool.candidates(counting, 100)) == 9  # type: ignore[arg-type]
    assert counting.reads == 0


def test_a_nonce_that_moved_without_the_pool_is_read_from_the_state(devchain: DevChain) -> None:
    """A block this pool never saw (as after a snapshot) moves a sender's nonce: its
    pending successors are still found, and the now stale one is refused by the build."""
    cid = devchain.chain.genesis.chain_id
    pool = _pool(devchain)
    sender = devchain.accounts[0]
    for n in range(3):
        pool.add(_transfer(sender, n, cid), devchain.chain.state())
    devchain.commit([_transfer(sender, 0, cid), _transfer(sender, 1, cid)])  # not through remove_committed
    stale = pool.candidates(devchain.chain.state(), 100)
    executed, rejected = devchain.chain.build(stale, timestamp_ms=devchain.clock_ms + 1, proposer=0, view=0)
    assert [tx.nonce for tx, _ in rejected] == [0, 1]
    assert [tx.nonce for tx in executed.block.transactions] == [2]
    for tx, _ in rejected:
        pool.remove(tx)
    assert [tx.nonce for tx in pool.candidates(devchain.chain.state(), 100)] == [2]


def test_senders_take_turns_so_a_flooder_delays_only_itself(devchain: DevChain) -> None:
    cid = devchain.chain.genesis.chain_id
    pool = _pool(devchain)
    flooder, other = devchain.accounts[0], devchain.accounts[1]
    for n in range(50):
        pool.add(_transfer(flooder, n, cid), devchain.chain.state())
    late = _transfer(other, 0, cid)
    pool.add(late, devchain.chain.state())
    chosen = pool.candidates(devchain.chain.state(), 4)
    assert late in chosen[:2], "the other sender waits for the flooder's backlog"
    assert [tx.nonce for tx in chosen if tx.sender == flooder.public_key] == [0, 1, 2]


def test_a_sender_is_bounded_in_bytes(devchain: DevChain) -> None:
    cid = devchain.chain.genesis.chain_id
    one = len(rlp.encode(_transfer(devchain.accounts[0], 0, cid)))
    pool = _pool(devchain, per_sender_bytes_max=2 * one + 1)
    pool.add(_transfer(devchain.accounts[0], 0, cid), devchain.chain.state())
    pool.add(_transfer(devchain.accounts[0], 1, cid), devchain.chain.state())
    assert _rejects(pool, _transfer(devchain.accounts[0], 2, cid), devchain) == "sender-full"
    pool.add(_transfer(devchain.accounts[1], 0, cid), devchain.chain.state())  # others still fit


def test_senders_without_balance_share_a_small_quota(tmp_path: Path) -> None:
    funded = [key(i + 1) for i in range(3)]
    free_a, free_b = key(501), key(502)  # accounts without tokens, as a free device registration gives
    raw = genesis_dict(funded)
    raw["accounts"] += [{"public_key": k.public_key.hex(), "balance": 0} for k in (free_a, free_b)]
    devchain = DevChain(open_chain(tmp_path / "chain", Genesis.from_dict(raw)), funded)
    cid = devchain.chain.genesis.chain_id
    pool = _pool(devchain, unfunded_sender_txs_max=3, unfunded_txs_max=4)
    for n in range(3):
        pool.add(_transfer(free_a, n, cid, amount=0), devchain.chain.state())
    assert _rejects(pool, _transfer(free_a, 3, cid, amount=0), devchain) == "sender-full"
    pool.add(_transfer(free_b, 0, cid, amount=0), devchain.chain.state())
    assert _rejects(pool, _transfer(free_b, 1, cid, amount=0), devchain) == "unfunded-full"
    for n in range(5):  # a funded sender is not held back by them
        pool.add(_transfer(devchain.accounts[2], n, cid), devchain.chain.state())
    pool.remove(pool.candidates(devchain.chain.state(), 100)[0])
    assert len(pool) == 8


def test_a_full_pool_still_holds_what_a_block_can_take(devchain: DevChain) -> None:
    """Relayed copies arrive in any order: without a quota for transactions past a nonce
    gap, a full pool refused the gaps' fillers and held nothing executable (a 100,000
    backlog churned views with 20,000 pending)."""
    cid = devchain.chain.genesis.chain_id
    pool = _pool(devchain, txs_max=8, future_txs_max=3)
    a, b, c = devchain.accounts[:3]
    for n in (1, 2, 3):  # a's nonce 0 has not arrived: all three wait behind the gap
        pool.add(_transfer(a, n, cid), devchain.chain.state())
    assert pool.future_count == 3
    assert _rejects(pool, _transfer(b, 1, cid), devchain) == "mempool-full"  # past b's gap: no room
    for n in range(5):  # executable ones still enter, up to the pool's own bound
        pool.add(_transfer(c, n, cid), devchain.chain.state())
    assert len(pool.candidates(devchain.chain.state(), 100)) == 5
    assert _rejects(pool, _transfer(a, 0, cid), devchain) == "mempool-full"
    # a block takes c's five; a's filler enters and the three behind it are executable
    executed, _ = devchain.chain.build(pool.candidates(devchain.chain.state(), 100),
                                       timestamp_ms=devchain.clock_ms + 1, proposer=0, view=0)
    devchain.chain.append(executed.block)
    pool.remove_committed(list(executed.block.transactions), devchain.chain.state())
    pool.add(_transfer(a, 0, cid), devchain.chain.state())
    assert pool.future_count == 0
    assert [tx.nonce for tx in pool.candidates(devchain.chain.state(), 100)] == [0, 1, 2, 3]
    # a transaction the proposer dropped leaves its successors behind a gap again
    pool.remove(pool.get(_transfer(a, 1, cid).hash))
    assert pool.future_count == 2


def test_future_quota_must_leave_room_below_the_pool() -> None:
    with pytest.raises(ValueError, match="future_txs_max"):
        MempoolLimits(txs_max=100, future_txs_max=100)
