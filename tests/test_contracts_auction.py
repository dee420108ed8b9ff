"""The auction's pure rules: k-means steps a-d, eqs. (10)-(12), and the property that the
winner has the minimal ranking price among the valid reveals (also on a real chain)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.addresses import DSC
from contracts.auction import BidderState, Mechanism, ValidBid, after_coupon, after_suspicion, ranking_price, settle
from contracts.dsc_records import bid_commitment
from contracts.kmeans import cluster, initial_centroids, nearest
from contracts.testing import BID_DEPOSIT, P_MAX, REQUEST_DEPOSIT, Call, address_of, consortium, events
from crypto import keccak256
from vm.fixedpoint import SCALE


def fp(*values: int) -> list[int]:
    return [v * SCALE for v in values]


def test_initial_centroids_are_spread_ranks_of_distinct_prices() -> None:
    assert initial_centroids(fp(50, 52, 150, 160), 3) == fp(50, 52, 160)  # ranks 0, 1, 3
    assert initial_centroids(fp(7, 7, 7), 3) == fp(7)  # u = 1 -> r = 1
    assert initial_centroids(fp(1, 2, 3, 4, 5), 2) == fp(1, 5)


def test_nearest_breaks_ties_to_the_lower_centroid() -> None:
    assert nearest(70 * SCALE, fp(40, 100)) == 0
    assert nearest(71 * SCALE, fp(40, 100)) == 1


def test_one_class_has_no_suspect() -> None:
    result = cluster(fp(80, 80, 80), 3)
    assert result.suspect == (False, False, False) and result.centroids == tuple(fp(80))


def test_cluster_converges_and_marks_classes_below_the_mean() -> None:
    result = cluster(fp(40, 60, 70, 100), 2)
    assert result.centroids == (56_666_666, 100 * SCALE)
    assert result.assignment == (0, 0, 0, 1) and result.suspect == (True, True, True, False)
    ring = cluster(fp(50, 52, 150, 160), 3)
    assert ring.centroids == tuple(fp(50, 52, 155)) and ring.suspect == (True, True, False, False)


@given(st.lists(st.integers(min_value=11, max_value=199), min_size=1, max_size=30), st.integers(1, 5))
def test_cluster_invariants(prices: list[int], r_max: int) -> None:
    result = cluster(fp(*prices), r_max)
    assert list(result.centroids) == sorted(set(result.centroids))
    assert len(result.centroids) <= min(r_max, len(set(prices)))
    # classes are intervals: a higher price never sits in a lower class
    order = sorted(range(len(prices)), key=lambda i: prices[i])
    assert [result.assignment[i] for i in order] == sorted(result.assignment)
    assert not result.suspect[prices.index(max(prices))]  # the top class is never below the mean


def test_suspect_count_raises_w_at_the_threshold() -> None:
    state = BidderState()
    state = after_suspicion(state, True, 2)
    assert state == BidderState(0, 0, 1)
    assert after_suspicion(state, False, 2) == state
    assert after_suspicion(state, True, 2) == BidderState(1, 0, 0)  # eq. (10)


def test_coupon_rule() -> None:
    assert after_coupon(BidderState(1, 5, 0), False, 90 * SCALE, 200).d == 5 + 2 * (90 * SCALE - 2_718_281)
    assert after_coupon(BidderState(1, 5, 0), True, 90 * SCALE, 200).d == 0  # eq. (11)
    # beta = 0.25: a quarter of the increment, truncated toward zero (also when negative)
    assert after_coupon(BidderState(5, 0, 0), False, 60 * SCALE, 25).d == -((148_413_159 - 60 * SCALE) // 4)
    assert ranking_price(100, 20 * SCALE) == 80 * SCALE  # eq. (12)


BIDS = st.lists(st.tuples(st.integers(min_value=11, max_value=199), st.integers(-200, 200)),
                min_size=1, max_size=12)


@given(BIDS)
def test_winner_has_minimal_ranking_price(bids: list[tuple[int, int]]) -> None:
    valid = [ValidBid(bytes([i]) * 20, p, 60 * SCALE, i) for i, (p, _) in enumerate(bids)]
    states = {b.bidder: BidderState(0, d * SCALE, 0) for b, (_, d) in zip(valid, bids, strict=True)}
    outcome = settle(valid, states, Mechanism())
    best = min(o for _, o in outcome.ranking)
    winner_o = dict((b.bidder, o) for b, o in outcome.ranking)[outcome.winner.bidder]
    assert winner_o == best
    tied = [b for b, o in outcome.ranking if o == best]
    assert outcome.winner.price == min(b.price for b in tied)
    assert outcome.winner.index == min(b.index for b in tied if b.price == outcome.winner.price)


SUPPLIERS = ["s1", "s2", "s3", "s4"]


@settings(max_examples=10, deadline=None)
@given(st.lists(st.one_of(st.integers(min_value=1, max_value=250), st.none()), min_size=4, max_size=4),
       st.lists(st.integers(-50, 50), min_size=4, max_size=4))
def test_chain_winner_is_minimal_among_valid_reveals(prices: list[int | None], coupons: list[int]) -> None:
    """On chain: seeded coupons, some prices out of range, some reveals missing."""
    seeds = [{"address": address_of(n).hex(), "d": d * SCALE} for n, d in zip(SUPPLIERS, coupons, strict=True)]
    c = consortium(SUPPLIERS, bidders=seeds)
    try:
        opened = c.send("phone", DSC, "open_request", [address_of("dev")], REQUEST_DEPOSIT + P_MAX)
        request_id = events(opened, "RequestOpened")[0]["request"]
        assert isinstance(request_id, int)
        salt = keccak256(b"s")
        c.block([Call(n, DSC, "commit", [request_id, bid_commitment(request_id, address_of(n), p or 0,
                                                                    60 * SCALE, salt)], BID_DEPOSIT)
                 for n, p in zip(SUPPLIERS, prices, strict=True)])
        c.advance(60_000)
        c.block([Call(n, DSC, "reveal", [request_id, p, 60 * SCALE, salt])
                 for n, p in zip(SUPPLIERS, prices, strict=True) if p is not None])
        c.advance(60_000)
        closed = events(c.send("stranger", DSC, "close", [request_id]), "AuctionClosed")[0]
        valid = {address_of(n): p * SCALE - d * SCALE for n, p, d in zip(SUPPLIERS, prices, coupons, strict=True)
                 if p is not None and 10 < p < 200}
        if not valid:
            assert closed["winner"] == b""
            return
        assert {r[0]: r[2] for r in closed["ranking"]} == valid  # type: ignore[union-attr, index]
        assert valid[closed["winner"]] == min(valid.values())  # type: ignore[index]
    finally:
        c.close()
