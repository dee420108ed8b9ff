"""bench.market: tiny seeded simulations through the real contracts, asserting measured
properties of the shipped auction rules against the paper's rule as first implemented."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from bench.market import PAPER, Plan, Scenario, experiment, shipped_mechanism, simulate
from bench.market_plots import write_plots

ROUNDS = 36
H = shipped_mechanism()["suspect_threshold"]


def test_shipped_rules_flag_a_ring_within_h_auctions_and_spare_honest_bidders() -> None:
    shipped = shipped_mechanism()
    ring = simulate(Scenario("shipped", shipped, ring=2, rounds=ROUNDS))
    # every member's w rose, at the latest in the h-th auction (rounds count from 0)
    assert all(r is not None and r <= H - 1 for r in ring.ring_w_rounds), ring.ring_w_rounds
    assert ring.ring_suspect_rate > 0.9
    normal = simulate(Scenario("shipped", shipped, ring=0, rounds=ROUNDS))
    assert normal.honest_w_raised == 0, normal.honest_w_final
    assert normal.honest_suspect_rate < 0.05
    assert normal.honest_dropouts == 0


def test_the_papers_rule_flags_honest_bidders_in_the_same_market() -> None:
    """The measurement can fail: the literal rule suspects the cheapest class every auction."""
    normal = simulate(Scenario("paper", {}, ring=0, rounds=ROUNDS))
    assert normal.honest_suspect_rate > 0.2
    assert normal.honest_w_raised >= 3


def test_without_coupons_a_ring_drives_honest_bidders_out() -> None:
    plain = simulate(Scenario("beta-0", {"beta_percent": 0}, ring=2, rounds=ROUNDS))
    assert plain.ring_win_share == 1.0
    assert plain.honest_dropouts == 6  # each lost 12 in a row and left


def test_the_credit_pump_fails_in_the_simulator() -> None:
    pump = simulate(Scenario("shipped", shipped_mechanism(), ring=0, honest=3, rounds=12, pump=True)).pump
    assert pump["self_ratings"] == 12 and pump["counted"] == 0
    assert pump["credit_after"] == pump["credit_before"]


def test_seeded_runs_repeat_and_the_report_plots(tmp_path: Path) -> None:
    a = asdict(simulate(Scenario("paper", {}, ring=1, rounds=8, seed=5)))
    b = asdict(simulate(Scenario("paper", {}, ring=1, rounds=8, seed=5)))
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    report = experiment(Plan(6, 4, ("paper", "shipped"), (2,), (11,)), say=lambda _: None)
    assert report["paper"] == PAPER and set(report["variants"]) == {"paper", "shipped"}
    paths = write_plots(report, tmp_path)
    assert len(paths) == 7 and all(p.stat().st_size > 10_000 for p in paths)
