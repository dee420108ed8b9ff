"""The DSC's multidimensional reverse auction as pure functions (paper IV.B): ranking
prices (eq. (12)), the collusion check (steps a-e, eq. (10)) and coupons (eq. (11)).

Units: prices P_i are whole token units; credits Cred_i are fixed point (credit points x
SCALE); coupons d_i and ranking prices O_i are fixed point token units (tokens x SCALE);
beta converts one credit point into beta tokens. d_i is not clamped at zero: the paper
gives no floor, so a bidder whose e^{w_i} exceeds its credit accumulates a negative
coupon (a ranking penalty).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from contracts.kmeans import Clustering, cluster
from crypto.keys import Address
from vm import fixedpoint


@dataclass(frozen=True)
class BidderState:
    w: int = 0  # suspect index w_i, eq. (10)
    d: int = 0  # coupon d_i, fixed point tokens, eq. (11)
    suspect_count: int = 0  # auctions spent in a suspect class since w_i last grew


@dataclass(frozen=True)
class ValidBid:
    bidder: Address
    price: int  # P_i, tokens
    credit: int  # Cred_i, fixed point
    index: int  # commit order (ties)


@dataclass(frozen=True)
class Outcome:
    winner: ValidBid
    ranking: tuple[tuple[ValidBid, int], ...]  # (bid, O_i) in commit order
    suspects: tuple[Address, ...]  # bidders in a suspect class, commit order
    states: dict[Address, BidderState]  # every valid bidder's state after the auction
    clustering: Clustering


def ranking_price(price: int, coupon: int) -> int:
    """O_i = P_i - d_i, eq. (12), in fixed point."""
    return fixedpoint.from_int(price) - coupon


def after_suspicion(state: BidderState, suspect: bool, threshold: int) -> BidderState:
    """Step e / eq. (10): every auction spent in a suspect class counts; at the threshold h
    the suspect index grows by one and the count restarts."""
    if not suspect:
        return state
    count = state.suspect_count + 1
    if count >= threshold:
        return replace(state, w=state.w + 1, suspect_count=0)
    return replace(state, suspect_count=count)


def after_coupon(state: BidderState, won: bool, credit: int, beta: int) -> BidderState:
    """Eq. (11): a failed bidder gains beta*(Cred_i - e^{w_i}); the winner's coupon is 0."""
    if won:
        return replace(state, d=0)
    return replace(state, d=state.d + beta * (credit - fixedpoint.exp(fixedpoint.from_int(state.w))))


def settle(bids: list[ValidBid], states: dict[Address, BidderState], beta: int, clusters_max: int,
           suspect_threshold: int) -> Outcome:
    """Rank the valid reveals with the coupons they carry in (eq. (12)); the lowest O_i
    wins, ties to the lower P_i, then the earlier commit. Then the collusion check updates
    w_i (eq. (10)) and, with the new w_i, the coupons (eq. (11))."""
    assert bids, "an auction is settled on at least one valid bid"
    ranking = tuple((bid, ranking_price(bid.price, states[bid.bidder].d)) for bid in bids)
    winner = min(ranking, key=lambda entry: (entry[1], entry[0].price, entry[0].index))[0]
    clustering = cluster([fixedpoint.from_int(bid.price) for bid in bids], clusters_max)
    after: dict[Address, BidderState] = {}
    for bid, suspect in zip(bids, clustering.suspect, strict=True):
        state = after_suspicion(states[bid.bidder], suspect, suspect_threshold)
        after[bid.bidder] = after_coupon(state, bid is winner, bid.credit, beta)
    suspects = tuple(bid.bidder for bid, s in zip(bids, clustering.suspect, strict=True) if s)
    return Outcome(winner, ranking, suspects, after, clustering)
