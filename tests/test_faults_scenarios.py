"""Short runs of every fault scenario on real node processes (docs/faults.md has the long
ones). Each builds its own cluster, runs the workload through the faults, heals, and
checks every invariant; the whole file takes a few minutes on two cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from faults import SCENARIOS, run_scenario, summary
from faults.replay import trace_text

pytestmark = pytest.mark.timeout(180)

# The membership changes wait on chain events (two votes, a switch, a catch-up across it):
# 60-80 s of wall time at load 20, not the seconds of the default suite.
SLOW = {f"byzantine-{mode}-t2" for mode in ("bad-signature", "wrong-roots", "omit-entries", "silent")} | {
    "join-while-crashed", "remove-while-partitioned"}
DURATION_S = 4
CRASH_LOOP_KILLS = 3


def _check(entry: dict) -> None:
    print(summary(entry))
    if not entry["passed"] and SCENARIOS[entry["name"]].replayable:  # a CI log keeps only the output
        print("trace of this run (save the next line as trace.json; python node.py faults --replay trace.json):")
        print(trace_text(entry))
    assert "error" not in entry, entry.get("traceback")
    invariants = entry["invariants"]
    for name, verdict in invariants.items():
        assert verdict["passed"], f"{entry['name']}: {name}: {verdict['detail']}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in SCENARIOS])
def test_scenario_short(name: str, tmp_path: Path) -> None:
    entry = run_scenario(name, seed=7, duration=DURATION_S, workdir=tmp_path, iterations=CRASH_LOOP_KILLS)
    _check(entry)
    assert entry["name"] == name and entry["seed"] == 7
    if SCENARIOS[name].kind == "fuzz":
        assert entry["fuzz"]["cases"] >= 300
        return
    if SCENARIOS[name].kind == "exhaustion":
        assert entry["wall_s"] < 60, "the short resource-exhaustion runs belong in the default suite"
        return
    tx = entry["transactions"]
    assert tx["ok"] > 0 and tx["invoked"] == tx["ok"] + tx["fail"] + tx["unknown"]
    assert entry["acknowledged"]["found_final"] == entry["acknowledged"]["of"] == tx["ok"]
    assert entry["forks"] == 0 and entry["lost"] == 0 and entry["duplicated"] == 0
    if name == "crash-majority":
        assert entry["invariants"]["no_progress_while_down"]["passed"]
    if name == "crash-loop":
        assert entry["crash_loop"]["kills"] == CRASH_LOOP_KILLS
    if name == "double-spend":
        assert entry["double_spend"]["both_final"] == 0 and entry["double_spend"]["rounds"] >= 3


def test_a_scenario_under_an_open_loop_load(tmp_path: Path) -> None:
    """`--rate`: the faults also meet a real load; its transfers are checked like the clients'."""
    entry = run_scenario("kill-primary", seed=3, duration=DURATION_S, workdir=tmp_path, rate=80)
    _check(entry)
    assert entry["rate_load"]["acknowledged"] > 100
    assert entry["transactions"]["invoked"] > entry["rate_load"]["acknowledged"]  # in the checked history
