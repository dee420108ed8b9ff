"""Contract parameters are validated where they are set: genesis loading refuses a value
that breaks a rule and the error names the rule (contracts/params.py)."""

from __future__ import annotations

from typing import Any

import pytest

from chain.genesis import GenesisError
from contracts import Credit, ParamError, build_contracts, genesis_from_dict
from contracts.credit import credit_from_ratings
from tests.support import genesis_dict, key

METER = {"meter": {"p_min": 10, "p_max": 200}}


def refused(contracts: dict[str, Any]) -> str:
    with pytest.raises(GenesisError) as caught:
        genesis_from_dict(genesis_dict([key(1)], contracts=contracts))
    return str(caught.value)


@pytest.mark.parametrize(("contracts", "rule"), [
    ({"credit": {"alpha_percent": 100}}, "alpha_percent in [0, 100)"),
    ({"credit": {"alpha_percent": -1}}, "alpha_percent in [0, 100)"),
    ({"credit": {"history_max": 0}}, "history_max >= 1"),
    ({"credit": {"credit_initial": 101}}, "credit_initial in [0, 101)"),
    ({"dsc": {"clusters_max": 0, "prices": METER}}, "clusters_max >= 1"),
    ({"dsc": {"suspect_threshold": 0}}, "suspect_threshold >= 1"),
    ({"dsc": {"commit_ms": 0}}, "commit_ms >= 1"),
    ({"dsc": {"reveal_ms": -5}}, "reveal_ms >= 1"),
    ({"dsc": {"service_ms": 0}}, "service_ms >= 1"),
    ({"dsc": {"beta_percent": -1}}, "beta_percent >= 0"),
    ({"dsc": {"beta": 1}}, "beta is now beta_percent"),
    ({"dsc": {"suspect_gap_percent": 100}}, "suspect_gap_percent in [0, 100)"),
    ({"dsc": {"suspect_counting": "sometimes"}}, "suspect_counting is one of every, consecutive, decay"),
    ({"dsc": {"prices": {"meter": {"p_min": 200, "p_max": 200}}}}, "p_min + 1 < p_max"),
    ({"dsc": {"prices": {"meter": {"p_min": 10, "p_max": 11}}}}, "p_min + 1 < p_max"),
    ({"dsc": {"prices": {"meter": {"p_min": -1, "p_max": 11}}}}, "p_min >= 0"),
    ({"dsc": {"request_deposit": 0}}, "request_deposit >= 1"),
    ({"policy": {"timed_per_owner_max": 0}}, "timed_per_owner_max >= 1"),
    ({"registry": {"devices_per_phone_max": "many"}}, "devices_per_phone_max is an integer"),
])
def test_genesis_refuses_a_broken_rule_and_names_it(contracts: dict[str, Any], rule: str) -> None:
    message = refused(contracts)
    assert rule in message
    assert f"[contracts.{next(iter(contracts))}]" in message


def test_constructor_checks_too_and_valid_values_pass() -> None:
    """A later change goes through the same check: the contract refuses to be built."""
    with pytest.raises(ParamError) as caught:
        Credit({"alpha_percent": 100})
    assert caught.value.rule == "alpha_percent in [0, 100)"
    fine = {"credit": {"alpha_percent": 99}, "dsc": {"prices": {"meter": {"p_min": 10, "p_max": 12}},
                                                     "beta_percent": 0, "suspect_counting": "decay"}}
    genesis_from_dict(genesis_dict([key(1)], contracts=fine))
    assert len(build_contracts(fine)) == 7


def test_the_largest_alpha_allowed_never_empties_the_trimmed_mean() -> None:
    """alpha = 100 cut both of two ratings (the crash the rule prevents); 99 keeps one."""
    for n in range(1, 60):
        ratings = list(range(n))
        assert credit_from_ratings(ratings, 99) >= 0
