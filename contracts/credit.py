"""Credit (paper III.D, eqs. (8)-(9)): every member's reputation is the symmetric trimmed
mean of the last H ratings it received (integers 0-100, one per side per completed
service). Credits are fixed point (vm/fixedpoint.py, SCALE = 10**6 per credit point): a
credit of 87.5 is stored as 87_500_000. A member without ratings has `credit_initial`.

Only the DSC contract adds ratings: it checks that the service was completed and that each
side rates the other once.
"""

from __future__ import annotations

from typing import Any

from chain import Value
from contracts.addresses import CREDIT, DSC
from contracts.common import get_list, parse_address, require
from contracts.params import integer
from crypto import Address
from vm import CallContext, NativeContract, fixedpoint, method, view

RATING_MAX = 100  # credit is on a 0-100 scale


def _ratings_key(member: Address) -> bytes:
    return b"r:" + member


def _credit_key(member: Address) -> bytes:
    return b"c:" + member


def credit_from_ratings(ratings: list[int], alpha_percent: int) -> int:
    """Eqs. (8)-(9) on integer ratings: n_c = floor(alpha/100 * n/2) ratings are cut from
    each end and the rest averaged, in fixed point (truncated)."""
    return fixedpoint.trimmed_mean([fixedpoint.from_int(r) for r in ratings], alpha_percent)


def parse_params(params: dict[str, Any]) -> tuple[int, int, int]:
    """(H, alpha, initial credit). alpha < 100 keeps n - 2 n_c >= 1 for every n >= 1 (eq. (8)):
    with alpha = 100 two ratings are both cut and eq. (9) divides by zero."""
    history_max = integer(params, "credit", "history_max", 50, low=1)  # H
    alpha_percent = integer(params, "credit", "alpha_percent", 20, low=0, below=100)  # alpha, eq. (8)
    credit_initial = integer(params, "credit", "credit_initial", 60, low=0, below=RATING_MAX + 1)
    return history_max, alpha_percent, credit_initial


def validate_params(params: dict[str, Any]) -> None:
    parse_params(params)


class Credit(NativeContract):
    name = "credit"
    address = CREDIT

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.history_max, self.alpha_percent, credit_initial = parse_params(params)
        self.credit_initial = fixedpoint.from_int(credit_initial)

    def genesis(self, ctx: CallContext) -> None:
        """Seed rating histories (`history` parameter: [{address, ratings}]; tests, vectors)."""
        for entry in self.params.get("history", []):
            member = parse_address(entry["address"])
            for rating in entry["ratings"]:
                self._add(ctx, member, int(rating))

    @method
    def add_rating(self, ctx: CallContext, member: bytes, rating: int) -> None:
        require(ctx.sender == DSC, "not-authorized", "ratings come from completed DSC services")
        require(0 <= rating <= RATING_MAX, "bad-rating", f"{rating} is outside 0-{RATING_MAX}")
        credit = self._add(ctx, member, rating)
        ctx.emit("CreditUpdated", member=member, rating=rating, credit=credit)

    @view
    def credit_of(self, ctx: CallContext, member: bytes) -> int:
        """Cred_i in fixed point (eq. (9)), or the initial credit of a member never rated."""
        return ctx.get_int(_credit_key(member), self.credit_initial)

    @view
    def ratings(self, ctx: CallContext, member: bytes) -> Value:
        """The last H ratings, oldest first."""
        return get_list(ctx, _ratings_key(member))

    def _add(self, ctx: CallContext, member: Address, rating: int) -> int:
        history: list[Value] = [*get_list(ctx, _ratings_key(member)), rating][-self.history_max:]
        ratings = [r for r in history if isinstance(r, int)]
        assert len(ratings) == len(history), "ratings are ints"
        ctx.steps(len(ratings))
        credit = credit_from_ratings(ratings, self.alpha_percent)
        ctx.set_value(_ratings_key(member), history)
        ctx.set_value(_credit_key(member), credit)
        return credit
