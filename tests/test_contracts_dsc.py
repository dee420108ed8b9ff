"""The DSC contract on a real in-memory chain: windows, sealed bids, settlement, defaults,
ratings, records, and conservation of the token supply."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.addresses import CREDIT, DSC, RECORDS, TOKEN
from contracts.dsc_records import bid_commitment
from contracts.testing import (
    BID_DEPOSIT,
    FUNDS,
    P_MAX,
    REQUEST_DEPOSIT,
    Call,
    TestChain,
    address_of,
    consortium,
    events,
    reason,
)
from crypto import keccak256

SUPPLIERS = ["s1", "s2", "s3"]
DEV = address_of("dev")
WDEV = address_of("wdev")


@pytest.fixture
def chain() -> Iterator[TestChain]:
    c = consortium(SUPPLIERS)
    yield c
    c.close()


def salt(name: str) -> bytes:
    return keccak256(name.encode())


def credit(c: TestChain, name: str) -> int:
    value = c.view(CREDIT, "credit_of", [address_of(name)])
    assert isinstance(value, int)
    return value


def open_auction(c: TestChain) -> int:
    receipt = c.send("phone", DSC, "open_request", [DEV], value=REQUEST_DEPOSIT + P_MAX)
    assert receipt.succeeded, receipt.error
    request_id = events(receipt, "RequestOpened")[0]["request"]
    assert isinstance(request_id, int)
    return request_id


def commit(c: TestChain, request_id: int, prices: dict[str, int]) -> None:
    calls = [Call(n, DSC, "commit", [request_id, bid_commitment(request_id, address_of(n), p, credit(c, n),
                                                                  salt(n))], BID_DEPOSIT)
             for n, p in prices.items()]
    assert all(r.succeeded for r in c.block(calls))


def reveal(c: TestChain, request_id: int, prices: dict[str, int]) -> None:
    calls = [Call(n, DSC, "reveal", [request_id, p, credit(c, n), salt(n)]) for n, p in prices.items()]
    assert all(r.succeeded for r in c.block(calls))


def run_auction(c: TestChain, prices: dict[str, int]) -> tuple[int, dict]:
    request_id = open_auction(c)
    commit(c, request_id, prices)
    c.advance(60_000)
    reveal(c, request_id, prices)
    c.advance(60_000)
    closed = c.send("stranger", DSC, "close", [request_id])
    assert closed.succeeded, closed.error
    return request_id, events(closed, "AuctionClosed")[0]


def total_supply(c: TestChain) -> int:
    names = ["admin", "vendor", "phone", "dev", "wdev", "stranger", *SUPPLIERS]
    return sum(c.balance(n) for n in names) + c.balance(TOKEN) + c.balance(DSC)


def test_full_out_of_warranty_service(chain: TestChain) -> None:
    request_id, closed = run_auction(chain, {"s1": 80, "s2": 70, "s3": 150})
    assert closed["winner"] == address_of("s2") and closed["price"] == 70
    assert chain.balance("phone") == FUNDS - REQUEST_DEPOSIT - 70  # surplus P_max - 70 came back
    assert chain.balance("s1") == FUNDS and chain.balance("s2") == FUNDS - BID_DEPOSIT
    assert reason(chain.send("phone", DSC, "complete", [request_id, keccak256(b"f")])) == "mode-not-set"
    assert reason(chain.send("s1", DSC, "set_mode", [request_id, "remote"])) == "not-node"
    assert chain.send("s2", DSC, "set_mode", [request_id, "on-site"]).succeeded
    assert chain.send("s2", DSC, "log_message", [request_id, 4, keccak256(b"C_v")]).succeeded
    assert chain.send("dev", DSC, "log_message", [request_id, 5, keccak256(b"C_k")]).succeeded
    assert reason(chain.send("s1", DSC, "log_message", [request_id, 5, keccak256(b"x")])) == "not-party"
    done = chain.send("phone", DSC, "complete", [request_id, keccak256(b"fault")])
    assert done.succeeded, done.error
    assert events(done, "Paid")[0]["amount"] == 70
    assert chain.balance("s2") == FUNDS + 70 and chain.balance("phone") == FUNDS - 70
    assert chain.send("phone", DSC, "rate", [request_id, 90]).succeeded
    assert reason(chain.send("dev", DSC, "rate", [request_id, 10])) == "already-rated"
    assert chain.send("s2", DSC, "rate", [request_id, 70]).succeeded
    record = chain.view(RECORDS, "by_node", [address_of("s2"), 0, 10])
    assert isinstance(record, list) and len(record) == 1
    assert record[0][1:6] == [DEV, address_of("s2"), "meter", 70, "on-site"]
    assert record[0][8:] == [90, 70]
    assert chain.view(RECORDS, "by_device", [DEV, 0, 10]) == record
    assert credit(chain, "s2") == 90_000_000 and chain.view(CREDIT, "credit_of", [DEV]) == 70_000_000
    assert [m[0] for m in chain.view(DSC, "messages", [request_id])] == [4, 5]  # type: ignore[union-attr]
    assert total_supply(chain) == FUNDS * 9


def test_in_warranty_request_goes_to_vendor_for_free(chain: TestChain) -> None:
    opened = chain.send("wdev", DSC, "open_request", [WDEV], value=REQUEST_DEPOSIT)
    assert opened.succeeded, opened.error
    assigned = events(opened, "Assigned")[0]
    assert assigned["node"] == address_of("vendor") and assigned["price"] == 0
    request_id = assigned["request"]
    assert reason(chain.send("s1", DSC, "commit", [request_id, b"\x00" * 32], BID_DEPOSIT)) == "not-bidding"
    assert chain.send("vendor", DSC, "set_mode", [request_id, "remote"]).succeeded
    assert chain.send("phone", DSC, "complete", [request_id, keccak256(b"f")]).succeeded
    assert chain.balance("wdev") == FUNDS and chain.balance("vendor") == FUNDS


def test_wrong_deposit_and_strangers_are_refused(chain: TestChain) -> None:
    assert reason(chain.send("phone", DSC, "open_request", [DEV], value=REQUEST_DEPOSIT)) == "bad-deposit"
    assert reason(chain.send("stranger", DSC, "open_request", [DEV], value=REQUEST_DEPOSIT + P_MAX)) \
        == "not-authorized"
    request_id = open_auction(chain)
    assert reason(chain.send("phone", DSC, "open_request", [DEV], value=REQUEST_DEPOSIT + P_MAX)) == "request-open"
    assert reason(chain.send("stranger", DSC, "commit", [request_id, b"\x01" * 32], BID_DEPOSIT)) \
        == "not-diagnosis-node"
    assert reason(chain.send("s1", DSC, "commit", [request_id, b"\x01" * 32], 1)) == "bad-deposit"
    assert chain.balance("stranger") == FUNDS and chain.balance("s1") == FUNDS


def test_actions_outside_their_window_are_rejected(chain: TestChain) -> None:
    request_id = open_auction(chain)
    commit(chain, request_id, {"s1": 50})
    early = chain.send("s1", DSC, "reveal", [request_id, 50, credit(chain, "s1"), salt("s1")])
    assert reason(early) == "reveal-too-early"
    assert reason(chain.send("stranger", DSC, "close", [request_id])) == "auction-not-ended"
    chain.advance(60_000)
    assert reason(chain.send("s2", DSC, "commit", [request_id, b"\x01" * 32], BID_DEPOSIT)) == "commit-closed"
    assert reason(chain.send("s1", DSC, "withdraw", [request_id])) == "commit-closed"
    chain.advance(60_000)
    late = chain.send("s1", DSC, "reveal", [request_id, 50, credit(chain, "s1"), salt("s1")])
    assert reason(late) == "reveal-closed"
    closed = chain.send("stranger", DSC, "close", [request_id])
    assert events(closed, "DepositForfeited")[0]["reason"] == "no-reveal"
    assert reason(chain.send("stranger", DSC, "close", [request_id])) == "not-bidding"


def test_no_one_can_reveal_another_bid(chain: TestChain) -> None:
    request_id = open_auction(chain)
    commit(chain, request_id, {"s1": 50})
    chain.advance(60_000)
    # s2 knows s1's price and salt but has no commitment of its own
    stolen = chain.send("s2", DSC, "reveal", [request_id, 50, credit(chain, "s1"), salt("s1")])
    assert reason(stolen) == "no-commit"
    reveal(chain, request_id, {"s1": 50})
    assert chain.view(DSC, "bid", [request_id, address_of("s1")])[2] == "valid"  # type: ignore[index]


def test_copied_commitment_is_worthless(chain: TestChain) -> None:
    request_id = open_auction(chain)
    sealed = bid_commitment(request_id, address_of("s1"), 50, credit(chain, "s1"), salt("s1"))
    calls = [Call("s1", DSC, "commit", [request_id, sealed], BID_DEPOSIT),
             Call("s2", DSC, "commit", [request_id, sealed], BID_DEPOSIT)]
    assert all(r.succeeded for r in chain.block(calls))
    chain.advance(60_000)
    copied = chain.send("s2", DSC, "reveal", [request_id, 50, credit(chain, "s1"), salt("s1")])
    assert events(copied, "BidRevealed")[0]["reason"] == "hash-mismatch"
    assert reason(chain.send("s2", DSC, "reveal", [request_id, 50, credit(chain, "s1"), salt("s1")])) \
        == "already-revealed"


def test_requester_credit_threshold(chain: TestChain) -> None:
    assert chain.send("s1", DSC, "set_min_requester_credit", [70_000_000]).succeeded
    request_id = open_auction(chain)  # the device has the initial credit 60
    refused = chain.send("s1", DSC, "commit", [request_id, b"\x01" * 32], BID_DEPOSIT)
    assert reason(refused) == "requester-credit-low"
    assert chain.send("s2", DSC, "commit", [request_id, b"\x01" * 32], BID_DEPOSIT).succeeded


def test_winner_refusal_forfeits_its_deposit_to_the_requester(chain: TestChain) -> None:
    request_id, _ = run_auction(chain, {"s1": 80})
    refused = chain.send("s1", DSC, "refuse", [request_id])
    assert refused.succeeded and events(refused, "Defaulted")[0]["party"] == address_of("s1")
    assert chain.balance("s1") == FUNDS - BID_DEPOSIT
    assert chain.balance("phone") == FUNDS + BID_DEPOSIT
    assert total_supply(chain) == FUNDS * 9


def test_deadline_blames_the_node_unless_it_reported_done(chain: TestChain) -> None:
    request_id, _ = run_auction(chain, {"s1": 80})
    assert reason(chain.send("stranger", DSC, "expire", [request_id])) == "deadline-not-reached"
    chain.advance(600_001)
    expired = chain.send("stranger", DSC, "expire", [request_id])
    assert events(expired, "Defaulted")[0]["reason"] == "no-completion"
    assert chain.balance("s1") == FUNDS - BID_DEPOSIT
    request2, _ = run_auction(chain, {"s2": 90})
    assert chain.send("s2", DSC, "set_mode", [request2, "remote"]).succeeded
    assert chain.send("s2", DSC, "report_done", [request2]).succeeded
    chain.advance(600_001)
    expired = chain.send("stranger", DSC, "expire", [request2])
    assert events(expired, "Defaulted")[0]["reason"] == "no-confirmation"
    assert chain.balance("s2") == FUNDS + 90 + REQUEST_DEPOSIT
    assert total_supply(chain) == FUNDS * 9


ACTIONS = st.lists(st.tuples(st.sampled_from(["commit", "reveal", "bad-reveal", "withdraw", "advance",
                                               "close", "mode", "complete", "refuse", "expire", "open"]),
                             st.sampled_from(SUPPLIERS), st.integers(min_value=1, max_value=250)),
                   max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS)
def test_token_supply_is_conserved(actions: list[tuple[str, str, int]]) -> None:
    """Any sequence of DSC actions, valid or not, leaves the total supply unchanged."""
    c = consortium(SUPPLIERS)
    try:
        request_id = open_auction(c)
        for action, who, number in actions:
            if action == "open":
                status = c.view(DSC, "request", [request_id])[4]  # type: ignore[index]
                if status not in ("bidding", "assigned"):
                    request_id = open_auction(c)
            elif action == "commit":
                sealed = bid_commitment(request_id, address_of(who), number, credit(c, who), salt(who))
                c.send(who, DSC, "commit", [request_id, sealed], BID_DEPOSIT)
            elif action in ("reveal", "bad-reveal"):
                chosen = salt(who) if action == "reveal" else salt("other")
                c.send(who, DSC, "reveal", [request_id, number, credit(c, who), chosen])
            elif action == "withdraw":
                c.send(who, DSC, "withdraw", [request_id])
            elif action == "advance":
                c.advance(number * 5_000)
            elif action == "close":
                c.send("stranger", DSC, "close", [request_id])
            elif action == "mode":
                c.send(who, DSC, "set_mode", [request_id, "remote"])
            elif action == "complete":
                c.send("phone", DSC, "complete", [request_id, keccak256(b"f")])
            elif action == "refuse":
                c.send(who if number % 2 else "phone", DSC, "refuse", [request_id])
            elif action == "expire":
                c.send("stranger", DSC, "expire", [request_id])
            assert total_supply(c) == FUNDS * 9
    finally:
        c.close()


def test_a_bidder_requotes_its_sealed_bid_within_the_commit_window(chain: TestChain) -> None:
    """Quotation update (IV.B): the sealed bid may be replaced before the reveal; the old
    commitment no longer reveals, the new one does, and the commit order is kept."""
    request_id = open_auction(chain)
    commit(chain, request_id, {"s1": 150, "s2": 120})
    lower = bid_commitment(request_id, address_of("s1"), 100, credit(chain, "s1"), salt("s1-lower"))
    assert reason(chain.send("s3", DSC, "requote", [request_id, lower])) == "no-commit"
    assert chain.send("s1", DSC, "requote", [request_id, lower]).succeeded
    chain.advance(60_000)
    assert reason(chain.send("s1", DSC, "requote", [request_id, lower])) == "commit-closed"
    stale = chain.send("s1", DSC, "reveal", [request_id, 150, credit(chain, "s1"), salt("s1")])
    assert events(stale, "BidRevealed")[0]["reason"] == "hash-mismatch"
    assert chain.view(DSC, "bid", [request_id, address_of("s1")])[1] == 0  # type: ignore[index]
    chain2 = consortium(SUPPLIERS)
    try:
        request2 = open_auction(chain2)
        commit(chain2, request2, {"s1": 150, "s2": 120})
        lower2 = bid_commitment(request2, address_of("s1"), 100, credit(chain2, "s1"), salt("s1-lower"))
        assert chain2.send("s1", DSC, "requote", [request2, lower2]).succeeded
        chain2.advance(60_000)
        revealed = chain2.send("s1", DSC, "reveal", [request2, 100, credit(chain2, "s1"), salt("s1-lower")])
        assert events(revealed, "BidRevealed")[0]["valid"] is True
        reveal(chain2, request2, {"s2": 120})
        chain2.advance(60_000)
        closed = events(chain2.send("stranger", DSC, "close", [request2]), "AuctionClosed")[0]
        assert closed["winner"] == address_of("s1") and closed["price"] == 100
    finally:
        chain2.close()
