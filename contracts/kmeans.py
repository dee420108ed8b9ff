"""One-dimensional k-means on bid prices, the DSC's collusion check (paper IV.B, steps a-e).

Prices and centroids are fixed-point integers; means truncate (vm/fixedpoint.py), so every
replica computes the same classes. The procedure, fixed where the paper is vague:

a. r = min(r_max, u) classes, u = the number of distinct prices. The initial centroids are
   the sorted distinct prices at ranks floor(j*(u-1)/(r-1)), j = 0..r-1 (r = 1: one class).
b. Each price joins its nearest centroid (a tie goes to the lower centroid); each class's
   centroid becomes the mean of its prices; a class left empty is dropped.
c. Repeat (b) until no assignment changes, at most ROUNDS_MAX rounds.
d. A class whose centroid is strictly below the mean of all centroids is suspect. Two
   optional tightenings (docs/auction.md measures why gridchain ships them): the centroid
   must lie at least `gap_percent` % below that mean, and the class must hold at least
   `class_min` bids (one bidder alone is not a conspiracy). gap 0, class_min 1 is the
   paper's rule.

Step e (the suspect index w_i, eq. (10)) needs history and lives in the DSC contract.
"""

from __future__ import annotations

from dataclasses import dataclass

from vm import fixedpoint

ROUNDS_MAX = 100


@dataclass(frozen=True)
class Clustering:
    centroids: tuple[int, ...]  # ascending, fixed point
    assignment: tuple[int, ...]  # class index of each price, in input order
    suspect: tuple[bool, ...]  # per price: its class is below the mean of the centroids
    rounds: int  # assignment rounds run (for gas)


def initial_centroids(prices: list[int], r_max: int) -> list[int]:
    """Step a: r = min(r_max, u) spread ranks of the sorted distinct prices."""
    distinct = sorted(set(prices))
    u = len(distinct)
    r = min(r_max, u)
    if r == 1:
        return [distinct[0]]
    return [distinct[(j * (u - 1)) // (r - 1)] for j in range(r)]


def nearest(price: int, centroids: list[int]) -> int:
    """Index of the nearest centroid; ties go to the lower (earlier, centroids ascend)."""
    best = 0
    for index in range(1, len(centroids)):
        if abs(price - centroids[index]) < abs(price - centroids[best]):
            best = index
    return best


def cluster(prices: list[int], r_max: int, gap_percent: int = 0, class_min: int = 1) -> Clustering:
    """Steps a-d on `prices` (fixed point, non-empty, r_max >= 1)."""
    assert prices and r_max >= 1, "k-means needs prices and at least one class"
    assert 0 <= gap_percent < 100 and class_min >= 1, "step d tightenings"
    centroids = initial_centroids(prices, r_max)
    previous: list[int] | None = None
    assignment: list[int] = []
    rounds = 0
    while rounds < ROUNDS_MAX:
        rounds += 1
        assignment = [nearest(p, centroids) for p in prices]  # step b
        if assignment == previous:  # step c
            break
        members: list[list[int]] = [[] for _ in centroids]
        for price, index in zip(prices, assignment, strict=True):
            members[index].append(price)
        kept = [i for i, group in enumerate(members) if group]  # drop empty classes
        renumber = {old: new for new, old in enumerate(kept)}
        centroids = [fixedpoint.mean(members[i]) for i in kept]
        previous = [renumber[i] for i in assignment]
        assignment = previous
    overall = fixedpoint.mean(centroids)
    sizes = [assignment.count(i) for i in range(len(centroids))]
    # step d: c < mean, and c <= mean * (100 - gap) / 100 (exact: both sides times 100)
    below = [c < overall and c * 100 <= overall * (100 - gap_percent) and size >= class_min
             for c, size in zip(centroids, sizes, strict=True)]
    return Clustering(tuple(centroids), tuple(assignment), tuple(below[i] for i in assignment),
                      rounds)
