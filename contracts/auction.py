"""The DSC's multidimensional reverse auction as pure functions (paper IV.B): ranking
prices (eq. (12)), the collusion check (steps a-e, eq. (10)) and coupons (eq. (11)).

Units: prices P_i are whole token units; credits Cred_i are fixed point (credit points x
SCALE); coupons d_i and ranking prices O_i are fixed point token units (tokens x SCALE);
beta_percent converts one credit point into beta_percent/100 tokens (eq. (11)'s beta).
d_i is not clamped at zero: the paper gives no floor, so a bidder whose e^{w_i} exceeds its
credit accumulates a negative
coupon (a ranking penalty).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from contracts.kmeans import Clustering, cluster
from crypto import Address
from vm import fixedpoint

Counting = Literal["every", "consecutive", "decay"]
COUNTING: tuple[Counting, ...] = ("every", "consecutive", "decay")


@dataclass(frozen=True)
class Mechanism:
    """The auction's tunable rules (genesis [contracts.dsc]). The defaults are what
    gridchain ships, chosen by the market simulation (docs/auction.md, bench/market.py):
    the paper's steps a-e read literally flagged every honest auction's cheapest class and
    drove honest bidders out, so step d needs a 30 % gap and two members, and step e counts
    consecutive suspect auctions as the paper's text says. The rule as first implemented
    is `PAPER_RULE` (beta 100, r 3, h 3, counting "every", no gap, class of one)."""

    beta_percent: int = 100  # eq. (11) beta, hundredths of a token per credit point
    clusters_max: int = 3  # r's ceiling
    bidders_per_class: int = 0  # r << n: r = n // this (at least 1); 0 = r is clusters_max
    suspect_threshold: int = 3  # h, eq. (10)
    suspect_counting: Counting = "consecutive"  # which suspect auctions count towards h
    suspect_gap_percent: int = 30  # step d: centroid this far below the mean of centroids
    suspect_class_min: int = 2  # step d: members a suspect class needs

    def classes(self, bidders: int) -> int:
        """Step a's r for `bidders` valid bids (k-means lowers it to the distinct prices)."""
        if self.bidders_per_class == 0:
            return self.clusters_max
        return max(1, min(self.clusters_max, bidders // self.bidders_per_class))


PAPER_RULE = Mechanism(suspect_counting="every", suspect_gap_percent=0, suspect_class_min=1)


@dataclass(frozen=True)
class BidderState:
    w: int = 0  # suspect index w_i, eq. (10)
    d: int = 0  # coupon d_i, fixed point tokens, eq. (11)
    suspect_count: int = 0  # suspect auctions counted towards h since w_i last grew


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


def after_suspicion(state: BidderState, suspect: bool, threshold: int,
                    counting: Counting = "every") -> BidderState:
    """Step e / eq. (10): a suspect auction adds one to the count; at the threshold h the
    suspect index grows by one and the count restarts. A clean auction leaves the count
    ("every"), restarts it ("consecutive", the paper's "after consecutive iterations") or
    takes one off ("decay")."""
    if not suspect:
        if counting == "every" or state.suspect_count == 0:
            return state
        return replace(state, suspect_count=0 if counting == "consecutive" else state.suspect_count - 1)
    count = state.suspect_count + 1
    if count >= threshold:
        return replace(state, w=state.w + 1, suspect_count=0)
    return replace(state, suspect_count=count)


def after_coupon(state: BidderState, won: bool, credit: int, beta_percent: int) -> BidderState:
    """Eq. (11): a failed bidder gains beta*(Cred_i - e^{w_i}), beta = beta_percent/100
    (truncated toward zero); the winner's coupon is 0."""
    if won:
        return replace(state, d=0)
    gain = fixedpoint.div_trunc(beta_percent * (credit - fixedpoint.exp(fixedpoint.from_int(state.w))), 100)
    return replace(state, d=state.d + gain)


def settle(bids: list[ValidBid], states: dict[Address, BidderState], mechanism: Mechanism) -> Outcome:
    """Rank the valid reveals with the coupons they carry in (eq. (12)); the lowest O_i
    wins, ties to the lower P_i, then the earlier commit. Then the collusion check updates
    w_i (eq. (10)) and, with the new w_i, the coupons (eq. (11))."""
    assert bids, "an auction is settled on at least one valid bid"
    m = mechanism
    ranking = tuple((bid, ranking_price(bid.price, states[bid.bidder].d)) for bid in bids)
    winner = min(ranking, key=lambda entry: (entry[1], entry[0].price, entry[0].index))[0]
    clustering = cluster([fixedpoint.from_int(bid.price) for bid in bids], m.classes(len(bids)),
                         m.suspect_gap_percent, m.suspect_class_min)
    after: dict[Address, BidderState] = {}
    for bid, suspect in zip(bids, clustering.suspect, strict=True):
        state = after_suspicion(states[bid.bidder], suspect, m.suspect_threshold, m.suspect_counting)
        after[bid.bidder] = after_coupon(state, bid is winner, bid.credit, m.beta_percent)
    suspects = tuple(bid.bidder for bid, s in zip(bids, clustering.suspect, strict=True) if s)
    return Outcome(winner, ranking, suspects, after, clustering)
