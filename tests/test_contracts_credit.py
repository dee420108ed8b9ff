"""Credit: trimmed mean of the last H ratings (eqs. (8)-(9)); only the DSC rates."""

from __future__ import annotations

from contracts.addresses import CREDIT
from contracts.credit import credit_from_ratings
from contracts.testing import TestChain, address_of, reason
from vm.fixedpoint import SCALE


def test_trimmed_mean_cuts_floor_alpha_n_over_2_from_each_end() -> None:
    ratings = [0, 50, 60, 60, 70, 70, 80, 80, 90, 100]
    assert credit_from_ratings(ratings, 20) == 70 * SCALE  # n_c = 1
    assert credit_from_ratings(ratings, 0) == 66 * SCALE  # n_c = 0: 660 / 10
    assert credit_from_ratings(ratings, 40) == 70 * SCALE  # n_c = 2: 420 / 6
    assert credit_from_ratings([100, 95, 95], 20) == 96_666_666


def test_history_window_and_initial_credit() -> None:
    member = address_of("m")
    params = {"credit": {"history_max": 3, "alpha_percent": 0, "credit_initial": 55,
                         "history": [{"address": member.hex(), "ratings": [10, 20, 30, 40, 50]}]}}
    c = TestChain(params, {"m": 10})
    try:
        assert c.view(CREDIT, "ratings", [member]) == [30, 40, 50]  # the last H = 3
        assert c.view(CREDIT, "credit_of", [member]) == 40 * SCALE
        assert c.view(CREDIT, "credit_of", [address_of("nobody")]) == 55 * SCALE
        assert reason(c.send("m", CREDIT, "add_rating", [member, 100])) == "not-authorized"
    finally:
        c.close()
