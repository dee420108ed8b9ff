"""Contract engine: typed dispatch, revert of every write, gas, views, fixed point, token."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain import Block, ChainStore, Transaction, TxReason
from chain.chain import Chain
from chain.genesis import Genesis
from contracts import build_contracts
from contracts.addresses import DSC, TOKEN
from tests.support import BALANCE, DevChain, genesis_dict, key
from vm import CallContext, Engine, InternalError, NativeContract, Revert, method
from vm import fixedpoint as fp
from vm.contract import well_known_address


def test_bad_arguments_and_unknown_method_fail_the_receipt(devchain: DevChain) -> None:
    a, b = devchain.accounts[:2]
    executed = devchain.commit([
        devchain.tx(a, TOKEN, "transfer", [b.address, "ten"]),
        devchain.tx(a, TOKEN, "no_such_method", []),
        devchain.tx(a, b"\x00" * 19 + b"\x63", "transfer", [b.address, 1]),
        devchain.tx(a, TOKEN, "balance_of", [b.address]),  # a view cannot be sent
    ])
    reasons = [r.error.decode().split(":")[0] for r in executed.receipts[:4]]
    assert reasons == ["bad-arguments", "unknown-method", "unknown-contract", "read-only"]
    assert all(r.status == 0 for r in executed.receipts[:4])


class Faulty(NativeContract):
    """A contract with a revert (its own rule) and a bug (an exception no rule raises)."""

    name = "faulty"
    address = well_known_address(99)

    @method
    def refuse(self, ctx: CallContext) -> None:
        ctx.set(b"k", b"1")
        raise Revert("refused", "by rule")

    @method
    def crash(self, ctx: CallContext) -> None:
        ctx.set(b"k", b"1")
        {}["missing"]  # a bug: KeyError


def faulty_devchain(directory: Path) -> DevChain:
    keys = [key(1)]
    genesis = Genesis.from_dict(genesis_dict(keys))
    engine = Engine([*build_contracts(genesis.contract_params), Faulty()])
    return DevChain(Chain(ChainStore(directory), genesis, engine), keys)


def test_a_revert_fails_the_receipt_but_a_bug_fails_the_block(tmp_path: Path) -> None:
    dev = faulty_devchain(tmp_path)
    a = dev.accounts[0]
    executed = dev.commit([dev.tx(a, Faulty.address, "refuse", [])])
    assert executed.receipts[0].status == 0 and executed.receipts[0].error == b"refused: by rule"
    height = dev.chain.height
    crash = dev.tx(a, Faulty.address, "crash", [])
    transfer = Transaction.create(a, chain_id=dev.chain.genesis.chain_id, nonce=crash.nonce, to=TOKEN,
                                  method="transfer", args=[key(2).address, 1])
    # A replica handed a block that meets the bug does not apply it ...
    bugged = Block(dev.chain.head.header.copy(number=height + 1, parent_hash=dev.chain.head.hash,
                                              timestamp_ms=dev.chain.head.header.timestamp_ms + 1), [crash], [])
    with pytest.raises(InternalError) as info:
        dev.chain.executor.state_transition(dev.chain.head.header, bugged, dev.chain.store)
    assert (info.value.contract, info.value.method) == ("faulty", "crash")
    assert isinstance(info.value.__cause__, KeyError)
    assert dev.chain.height == height  # nothing was applied
    # ... and a proposer keeps it out of its block (anyone may send the transaction that
    # finds a bug: a proposer that died on it would stop every primary in turn).
    executed, rejected = dev.chain.build([crash, transfer], timestamp_ms=dev.clock_ms + 1, proposer=0, view=0)
    assert [(tx, error.reason) for tx, error in rejected] == [(crash, TxReason.INTERNAL_ERROR)]
    assert isinstance(rejected[0][1].__cause__, InternalError)
    assert list(executed.block.transactions) == [transfer]  # its writes were rolled back: the nonce is free


class BuggyHook(NativeContract):
    """An end-of-block hook with a bug once `arm` was called, or one that runs out of memory."""

    name = "buggyhook"
    address = well_known_address(98)

    @method
    def arm(self, ctx: CallContext, kind: int) -> None:
        ctx.set(b"armed", kind.to_bytes(1, "big"))

    def end_block(self, ctx: CallContext) -> None:
        armed = ctx.get(b"armed")
        ctx.set(b"ran", ctx.block.number.to_bytes(8, "big"))  # undone when the hook fails
        if armed == b"\x01":
            {}["missing"]  # a bug: KeyError, in every block from now on
        if armed == b"\x02":
            raise MemoryError  # this process's limit, not the contract's logic


def test_a_bug_in_an_end_of_block_hook_is_undone_and_the_chain_goes_on(tmp_path: Path) -> None:
    """A hook runs in every block: if its bug stopped the block, every proposer in turn
    would stop for good. Two replicas undo the hook the same way and agree on the roots."""
    def replica(name: str) -> DevChain:
        keys = [key(1), key(2)]
        genesis = Genesis.from_dict(genesis_dict(keys))
        engine = Engine([*build_contracts(genesis.contract_params), BuggyHook()])
        return DevChain(Chain(ChainStore(tmp_path / name), genesis, engine), keys)

    proposer, follower = replica("proposer"), replica("follower")
    a = proposer.accounts[0]
    arm = proposer.tx(a, BuggyHook.address, "arm", [1])
    transfer = proposer.tx(a, TOKEN, "transfer", [key(2).address, 1])
    for tx in (arm, transfer):
        executed = proposer.commit([tx])
        follower.chain.append(executed.block)  # the replica's path: state_transition
        assert follower.chain.head.hash == proposer.chain.head.hash
        hook = executed.receipts[-1]
        assert hook.status == 0 and hook.error == b"internal-error: buggyhook"
        assert executed.receipts[0].status == 1  # the block's transactions stand
    # Out of memory is not the contract's logic: another replica may not meet it, so the
    # block is not applied.
    arm_oom = proposer.tx(a, BuggyHook.address, "arm", [2])
    with pytest.raises(InternalError) as info:
        proposer.chain.build([arm_oom], timestamp_ms=proposer.clock_ms + 1_000, proposer=0, view=0)
    assert isinstance(info.value.__cause__, MemoryError)


def test_an_integer_argument_out_of_range_is_the_callers_error(devchain: DevChain) -> None:
    a = devchain.accounts[0]
    # DSC keys a request by its id as 8 bytes: 2**70 cannot be one
    executed = devchain.commit([devchain.tx(a, DSC, "withdraw", [2**70])])
    assert executed.receipts[0].status == 0
    assert executed.receipts[0].error.startswith(b"bad-arguments: integer argument out of range")


def test_out_of_gas_reverts_and_charges_the_limit(devchain: DevChain) -> None:
    a, b = devchain.accounts[:2]
    executed = devchain.commit([devchain.tx(a, TOKEN, "transfer", [b.address, 5], gas_limit=1_500)])
    receipt = executed.receipts[0]
    assert receipt.status == 0 and receipt.error.startswith(b"out-of-gas")
    assert receipt.gas_used == 1_500
    assert devchain.chain.account(b.address).balance == BALANCE


def test_view_reads_state(devchain: DevChain) -> None:
    a, b = devchain.accounts[:2]
    devchain.commit([devchain.tx(a, TOKEN, "transfer", [b.address, 5])])
    chain = devchain.chain
    assert chain.engine.call_view(chain.state(), TOKEN, "balance_of", [b.address], chain.view_env()) == BALANCE + 5


def test_end_of_block_receipt_follows_the_transactions(devchain: DevChain) -> None:
    a, b = devchain.accounts[:2]
    executed = devchain.commit([devchain.tx(a, TOKEN, "transfer", [b.address, 1])])
    assert len(executed.receipts) == 2 and executed.receipts[-1].status == 1


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(-3, 2 * BALANCE)), max_size=12))
def test_total_supply_is_conserved(tmp_path_factory, moves: list[tuple[int, int, int]]) -> None:
    dev = DevChain.create(tmp_path_factory.mktemp("conserve"), accounts=6)
    accounts = dev.accounts
    txs = [dev.tx(accounts[s], TOKEN, "transfer", [accounts[r].address, amount]) for s, r, amount in moves]
    dev.commit(txs)
    total = sum(dev.chain.account(k.address).balance for k in accounts)
    total += dev.chain.state().balance(TOKEN)
    assert total == BALANCE * len(accounts)


def test_fixed_point_exp_matches_math_within_one_unit() -> None:
    for x in [0, 1, 2, 3, 5, 7, 10, -1, -4]:
        assert abs(fp.exp(fp.from_int(x)) - round(math.exp(x) * fp.SCALE)) <= 1
    assert fp.exp(fp.SCALE // 2) == 1_648_721


def test_trimmed_mean_eq_8_9() -> None:
    ratings = [fp.from_int(v) for v in (0, 10, 50, 60, 70, 90, 100)]
    # n = 7, alpha = 30: n_c = floor(0.3 * 3.5) = 1 -> drop 0 and 100, mean of 10..90 = 56
    assert fp.trimmed_mean(ratings, 30) == fp.from_int(56)
    assert fp.trimmed_mean(ratings, 0) == fp.div(fp.from_int(380), fp.from_int(7))


def test_division_truncates_toward_zero() -> None:
    assert fp.div_trunc(-7, 2) == -3 and fp.div_trunc(7, -2) == -3 and fp.div_trunc(7, 2) == 3
