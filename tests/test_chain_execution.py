"""State transition: replicas agree on roots; tampered blocks are rejected by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import rlp

from chain import Block, InvalidBlock, Receipt
from contracts.addresses import TOKEN
from tests.support import DevChain, open_chain


def _transfers(dev: DevChain, count: int) -> list:
    accounts = dev.accounts
    return [dev.tx(accounts[i % len(accounts)], TOKEN, "transfer",
                   [accounts[(i + 1) % len(accounts)].address, i + 1]) for i in range(count)]


def test_two_stores_reach_identical_roots(devchain: DevChain, tmp_path: Path) -> None:
    blocks = [devchain.commit(_transfers(devchain, 20)).block for _ in range(5)]
    replica = open_chain(tmp_path / "replica", devchain.chain.genesis)
    for block in blocks:
        replica.append(block)
    assert replica.head.hash == devchain.chain.head.hash
    assert replica.head.header.state_root == devchain.chain.head.header.state_root
    for address in [a.address for a in devchain.accounts]:
        assert replica.account(address) == devchain.chain.account(address)


def _replica_rejects(block: Block, devchain: DevChain, tmp_path: Path) -> InvalidBlock:
    replica = open_chain(tmp_path / "replica", devchain.chain.genesis)
    with pytest.raises(InvalidBlock) as caught:
        replica.execute(block)
    return caught.value


@pytest.fixture
def good_block(devchain: DevChain, tmp_path: Path) -> Block:
    executed, rejected = devchain.chain.build(_transfers(devchain, 5), timestamp_ms=devchain.clock_ms + 1,
                                              proposer=0, view=0)
    assert not rejected
    return executed.block


def test_tampered_state_root_is_named(devchain: DevChain, good_block: Block, tmp_path: Path) -> None:
    bad = good_block.copy(header=good_block.header.copy(state_root=b"\x11" * 32))
    error = _replica_rejects(bad, devchain, tmp_path)
    assert error.what == "state_root"
    assert error.got == b"\x11" * 32
    assert error.expected == good_block.header.state_root


def test_tampered_transaction_is_rejected(devchain: DevChain, good_block: Block, tmp_path: Path) -> None:
    tx = good_block.transactions[2]
    forged = tx.copy(value=tx.value + 1)  # signature no longer matches
    bad = good_block.copy(transactions=[*good_block.transactions[:2], forged, *good_block.transactions[3:]])
    error = _replica_rejects(bad, devchain, tmp_path)
    assert "bad-signature" in str(error)


def test_tampered_receipt_root_is_named(devchain: DevChain, good_block: Block, tmp_path: Path) -> None:
    bad = good_block.copy(header=good_block.header.copy(receipt_root=b"\x22" * 32))
    assert _replica_rejects(bad, devchain, tmp_path).what == "receipt_root"


def test_reordered_transactions_change_the_transaction_root(devchain: DevChain, tmp_path: Path) -> None:
    sender = devchain.accounts[0]
    txs = [devchain.tx(devchain.accounts[i + 1], TOKEN, "transfer", [sender.address, 1]) for i in range(3)]
    executed, _ = devchain.chain.build(txs, timestamp_ms=devchain.clock_ms + 1, proposer=0, view=0)
    swapped = executed.block.copy(transactions=list(reversed(executed.block.transactions)))
    assert _replica_rejects(swapped, devchain, tmp_path).what == "transaction_root"


def test_wrong_parent_and_number_are_named(devchain: DevChain, good_block: Block, tmp_path: Path) -> None:
    replica = open_chain(tmp_path / "replica", devchain.chain.genesis)
    for field, value in (("parent_hash", b"\x33" * 32), ("number", 5)):
        bad = good_block.copy(header=good_block.header.copy(**{field: value}))
        with pytest.raises(InvalidBlock) as caught:
            replica.execute(bad)
        assert caught.value.what == field


def test_replayed_nonce_makes_the_block_invalid(devchain: DevChain, tmp_path: Path) -> None:
    first = devchain.commit(_transfers(devchain, 1)).block
    replay = first.transactions[0]
    executed, rejected = devchain.chain.build([replay], timestamp_ms=devchain.clock_ms + 1, proposer=0, view=0)
    assert [exc.reason for _, exc in rejected] == ["nonce-mismatch"]
    assert executed.block.transactions == ()
    forced = executed.block.copy(transactions=[replay])
    assert "nonce-mismatch" in str(_replica_rejects_after(first, forced, devchain, tmp_path))


def _replica_rejects_after(first: Block, block: Block, devchain: DevChain, tmp_path: Path) -> InvalidBlock:
    replica = open_chain(tmp_path / "replica", devchain.chain.genesis)
    replica.append(first)
    with pytest.raises(InvalidBlock) as caught:
        replica.execute(block)
    return caught.value


def test_failed_call_keeps_nonce_bump_and_reverts_writes(devchain: DevChain) -> None:
    poor, rich = devchain.accounts[0], devchain.accounts[1]
    before = devchain.chain.account(poor.address)
    tx = devchain.tx(poor, TOKEN, "transfer", [rich.address, 10**15])  # more than it has
    executed = devchain.commit([tx])
    receipt: Receipt = executed.receipts[0]
    assert receipt.status == 0
    assert b"insufficient-funds" in receipt.error
    after = devchain.chain.account(poor.address)
    assert after.nonce == before.nonce + 1 and after.balance == before.balance
    assert rlp.decode(rlp.encode(receipt), Receipt) == receipt


def test_proposer_budget_stops_filling_the_block(devchain: DevChain, tmp_path: Path) -> None:
    txs = _transfers(devchain, 6)
    calls = []

    def full() -> bool:
        calls.append(1)
        return len(calls) >= 3  # "time is up" after the third check

    executed, rejected = devchain.chain.build(txs, timestamp_ms=devchain.clock_ms + 1, proposer=0, view=0,
                                              full=full)
    assert not rejected
    assert list(executed.block.transactions) == txs[:3]
    replica = open_chain(tmp_path / "replica", devchain.chain.genesis)
    replica.execute(executed.block)  # a smaller block is just as valid
