"""bench.wan's arithmetic: the goals of issue 15, the verdicts, the block cycle it reports."""

from __future__ import annotations

from bench.wan import block_cycle_ms, goals, judge


def test_goals_at_50_ms_rtt_with_the_wan_delta() -> None:
    assert goals(50, 1_250) == {"latency_p50_ms_max": 200, "throughput_ratio_min": 0.8, "recovery_s_max": 3.65}


def test_judge_meets_and_misses_each_goal_on_its_own() -> None:
    case = {"latency_ms": {"p50": 200.0}, "throughput_tps": 80.0, "recovery": {"seconds": 3.65}}
    verdict = judge(case, 100.0, 50, 1_250)
    assert verdict["latency_met"] and verdict["throughput_met"] and verdict["recovery_met"]
    assert verdict["throughput_ratio"] == 0.8
    slow = {"latency_ms": {"p50": 200.1}, "throughput_tps": 79.0, "recovery": {"seconds": None}}
    verdict = judge(slow, 100.0, 50, 1_250)
    assert not (verdict["latency_met"] or verdict["throughput_met"] or verdict["recovery_met"])


def test_the_block_cycle_is_the_median_gap_between_final_blocks() -> None:
    log = [[0.0, 1, 5], [0.1, 2, 5], [0.3, 3, 5], [0.35, 4, 5], [1.35, 5, 5], [1.45, 6, 5]]
    assert block_cycle_ms({"block_log": log}) == 100.0  # gaps 100, 200, 50, 1000, 100 ms
    assert block_cycle_ms({"block_log": log[:1]}) is None
