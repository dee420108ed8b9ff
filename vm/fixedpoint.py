"""Deterministic fixed-point arithmetic for contracts (architecture decision 7).

Numbers are ints scaled by SCALE = 10**6 ("micro units"). Division truncates toward zero
(as Python's int() of a quotient would, never toward minus infinity) so results do not
depend on sign conventions. No float ever appears.
"""

from __future__ import annotations

SCALE = 10**6
_EXP_TERMS_MAX = 60


def from_int(n: int) -> int:
    return n * SCALE


def to_int(x: int) -> int:
    """Truncate a fixed-point number toward zero to an integer."""
    return div_trunc(x, SCALE)


def div_trunc(a: int, b: int) -> int:
    assert b != 0, "division by zero"
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def mul(a: int, b: int) -> int:
    return div_trunc(a * b, SCALE)


def div(a: int, b: int) -> int:
    return div_trunc(a * SCALE, b)


def exp(x: int) -> int:
    """e**x for fixed-point x, in fixed point (used by eq. (11) with x = w_i).

    Range reduction: e**x = (e**(x/2**k))**2**k with |x/2**k| <= 1/2, then a Taylor series
    evaluated with 20 extra decimal digits so the squarings do not amplify truncation.
    """
    guard = 10**20
    scale = SCALE * guard
    y = x * guard  # y in the wider scale
    halvings = 0
    while abs(y) > scale // 2:
        y = div_trunc(y, 2)
        halvings += 1
    term = scale
    total = scale
    for n in range(1, _EXP_TERMS_MAX):
        term = div_trunc(term * y, scale * n)
        if term == 0:
            break
        total += term
    for _ in range(halvings):
        total = div_trunc(total * total, scale)
    return div_trunc(total, guard)


def mean(values: list[int]) -> int:
    assert values, "mean of nothing"
    return div_trunc(sum(values), len(values))


def trimmed_mean(values: list[int], alpha_percent: int) -> int:
    """Symmetric trimmed mean, eqs. (8)-(9): n_c = floor(alpha/100 * n/2) values are cut
    from each end of the sorted list and the rest averaged (fixed point in, fixed point out).
    """
    assert 0 <= alpha_percent <= 100, "alpha is a percentage"
    n = len(values)
    cut = (alpha_percent * n) // 200  # floor(alpha/100 * n/2), eq. (8)
    kept = sorted(values)[cut : n - cut]
    return mean(kept)
