"""The benchmark suite's quick mode on small sizes: every part runs on real node processes
and reports what the docs and plots read."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import consensus
from bench.load import LoadOptions, run_load
from bench.plots import write_plots
from bench.suite import Sizes, run_suite

pytestmark = pytest.mark.timeout(480)

TINY = Sizes(load_txs=120, load_txs_n5=60, dsc_txs=40, open_rate=50, open_seconds=1, sweep_rates=(40,),
             sweep_seconds=1, state_accounts=(50,),
             state_txs=60, empty_seconds=1, full_block_txs=20, full_blocks=3, view_trials=1, catch_up_txs=60,
             catch_up_idle_s=0.5, overload_backlogs=(50, 200), overload_steady_txs=60, overload_pinned_txs=60)


def test_dsc_load_commits_every_operation() -> None:
    result, acked = run_load(LoadOptions(nodes=3, txs=60, kind="dsc", progress=False, timeout_s=60))
    assert result["kind"] == "dsc"
    assert result["committed"] == result["acked"] == len(acked) == 60
    assert result["receipts"]["status_ok"] == result["receipts"]["checked"]


def test_primary_death_mid_run_is_survived() -> None:
    """node0 (the primary of view 0) is SIGKILLed 1 s in: RPC fails over, the view changes."""
    result, _ = run_load(LoadOptions(nodes=3, txs=400, concurrency=3, progress=False, timeout_s=90, batch=10,
                                     rate=100, kill_node=0, kill_at_s=1.0))
    assert result["committed"] == result["acked"] == 400


def test_suite_quick_mode_and_plots(tmp_path: Path) -> None:
    report = run_suite(TINY)
    for case in ("n3_transfer", "n3_transfer_open", "n5_transfer", "n3_dsc", "n5_dsc"):
        assert report["load"][case]["committed"] == report["load"][case]["acked"] > 0, case
    assert report["load"]["n5_transfer"]["t"] == 2
    assert [c["accounts"] for c in report["state_growth"]] == [50 + 8]
    assert report["rate_sweep"][0]["offered_rate"] == 40
    assert report["empty_blocks"]["blocks_per_s"] > 0
    assert report["view_change"]["trials"][0]["new_view"] > report["view_change"]["trials"][0]["old_view"]
    assert report["catch_up"]["blocks_per_s"] > 0
    overload = report["overload"]
    assert [b["committed"] for b in overload["backlog"].values()] == [110, 260]
    assert overload["ledger"]["tps"] > 0 and overload["pinned"]["committed"] == 60
    assert set(overload["ratios"]) == {"backlog_largest_vs_smallest", "cluster_vs_ledger", "pinned_view_changes"}
    paths = write_plots(report, tmp_path)
    assert {p.name for p in paths} == {"throughput.png", "latency_cdf.png", "latency_vs_rate.png",
                                       "state_growth.png", "timeline.png", "consensus.png"}
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_view_change_reports_the_new_view() -> None:
    result = consensus.view_change(3, 1, timeouts={"commit_timeout_ms": 800, "view_change_timeout_ms": 600})
    trial = result["trials"][0]
    assert trial["seconds"] is not None and trial["seconds"] < 15
