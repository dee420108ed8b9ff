"""Mempool admission: each rejection is typed, has a reason, and changes nothing."""

from __future__ import annotations

import pytest

from chain.errors import InvalidTransaction
from chain.mempool import Mempool, MempoolLimits
from chain.types import Transaction
from contracts.addresses import TOKEN
from tests.support import DevChain, key


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
    pool = _pool(devchain, txs_max=2)
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
