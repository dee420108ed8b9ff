"""Replaying a fault scenario from its trace (faults/replay.py, `node.py faults --replay`):
what a trace may hold and the typed refusals, the recorded events carried out in order and
no earlier than their times, and a real kill-primary run replayed on real processes with
the same faults on the same nodes."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from faults import run_scenario
from faults.history import History
from faults.replay import NotReplayable, load_traces, replay, replay_schedule, replayed, trace_of, trace_text
from faults.scenarios import Ctx

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parent.parent


def _entry(name: str = "kill-primary", timeline: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"name": name, "seed": 3, "duration_s": 4.0, "clients": 2, "rate": 0, "iterations": 5,
            "timeline": timeline if timeline is not None else [
                {"t": 0.1, "kind": "note", "action": "load started", "clients": 2, "rate": 0},
                {"t": 2.0, "kind": "fault", "action": "kill -9", "node": 1},
                {"t": 4.5, "kind": "note", "action": "restarted", "node": 1},
                {"t": 4.5, "kind": "heal", "action": "restarted", "node": 1},
                {"t": 9.0, "kind": "heal", "action": "final heal", "stopped": [2]}]}


def test_a_trace_holds_the_run_parameters_and_the_faults_to_carry_out() -> None:
    trace = trace_of(_entry())
    assert (trace.scenario, trace.seed, trace.duration, trace.clients, trace.iterations) == ("kill-primary", 3, 4.0,
                                                                                           2, 5)
    assert [(e["kind"], e["action"]) for e in trace.events] == [("fault", "kill -9"), ("note", "restarted"),
                                                                ("heal", "restarted")]


@pytest.mark.parametrize("entry, says", [
    ({"seed": 1}, "not a scenario entry"),
    (_entry("no-such-scenario"), "unknown scenario"),
    (_entry("double-spend"), "more than its timeline records"),
    (_entry("fuzz-rpc"), "more than its timeline records"),
    (_entry(timeline=[{"t": 1.0, "kind": "fault", "action": "junk flood", "senders": 4}]), "cannot be replayed"),
    (_entry(timeline=[{"t": 1.0, "kind": "fault", "action": "partition", "minority": [0]}]), "lacks majority"),
    (_entry(timeline=[{"kind": "fault", "action": "kill -9", "node": 0}]), "lacks t"),
])
def test_what_cannot_be_replayed_is_refused_before_anything_starts(entry: dict[str, Any], says: str) -> None:
    with pytest.raises(NotReplayable, match=says):
        trace_of(entry)


def test_a_report_file_gives_the_traces_of_the_scenarios_asked_for(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"seed": 3, "scenarios": [_entry(), _entry("isolate", [])]}))
    assert [t.scenario for t in load_traces(report)] == ["kill-primary", "isolate"]
    assert [t.scenario for t in load_traces(report, ["isolate"])] == ["isolate"]
    with pytest.raises(NotReplayable, match="no trace of partition"):
        load_traces(report, ["partition"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(NotReplayable, match="bad.json"):
        load_traces(tmp_path / "bad.json")


def test_the_one_line_trace_a_failed_run_prints_replays_like_its_report_entry(tmp_path: Path) -> None:
    entry = {**_entry(), "invariants": {"no_fork": {"passed": False, "detail": "..."}}, "passed": False}
    line = trace_text(entry)
    assert "\n" not in line and "invariants" not in line
    (tmp_path / "trace.json").write_text(line + "\n")
    assert load_traces(tmp_path / "trace.json") == [trace_of(entry)]


class _Proxies:
    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls

    def isolate(self, node: int) -> None:
        self.calls.append(("isolate", node))

    def heal(self) -> None:
        self.calls.append(("heal links",))


class _Cluster:
    """What a replay asks of the cluster, recorded with the history's time."""

    nodes = 3

    def __init__(self, history: History) -> None:
        self.history = history
        self.calls: list[tuple[Any, ...]] = []
        self.proxies = _Proxies(self.calls)
        self.running = {0, 1, 2}

    def kill(self, i: int) -> None:
        self.calls.append(("kill", i, self.history.now()))
        self.running.discard(i)

    def is_running(self, i: int) -> bool:
        return i in self.running

    def start_node(self, i: int, byzantine: str | None = None) -> None:
        self.calls.append(("start", i, byzantine, self.history.now()))
        self.running.add(i)

    async def wait_serving(self, nodes: list[int] | None = None) -> None:
        return None


def test_the_events_are_carried_out_in_order_no_earlier_than_their_times() -> None:
    events = trace_of(_entry(timeline=[
        {"t": 0.3, "kind": "fault", "action": "kill -9", "node": 2},
        {"t": 0.2, "kind": "note", "action": "restarted", "node": 2, "byzantine": "silent"},
        {"t": 0.4, "kind": "fault", "action": "isolate", "node": 1},
        {"t": 0.5, "kind": "heal", "action": "heal links"},
        # a running node: stopped first; started when the recorded restart began
        {"t": 0.9, "since": 0.6, "kind": "note", "action": "restarted", "node": 2}])).events
    history = History()
    cluster = _Cluster(history)
    ctx = Ctx(cluster, history, random.Random(0), duration=1, iterations=1)  # type: ignore[arg-type]
    asyncio.run(replay_schedule(ctx, events))
    assert [call[:3] if call[0] == "start" else call[:2] for call in cluster.calls] == [
        ("kill", 2), ("start", 2, "silent"), ("isolate", 1), ("heal links",), ("kill", 2), ("start", 2, None)]
    assert cluster.calls[0][2] >= 0.3, "carried out before its recorded time"
    assert cluster.calls[-1][3] >= 0.6 and history.timeline()[-1]["since"] >= 0.6
    assert replayed(history.timeline()) == replayed(list(events))
    assert [t for t, _ in history.restarts] and history.fault_windows, "restarts and the fault window recorded"


def test_a_kill_primary_run_replays_with_the_same_faults_on_the_same_nodes(tmp_path: Path) -> None:
    first = run_scenario("kill-primary", seed=5, duration=4, workdir=tmp_path, clients=2)
    assert first["passed"], first.get("traceback") or first["invariants"]
    again = replay(trace_of(first), tmp_path)
    assert again["replay"] == {"events": len(trace_of(first).events), "same_faults": True}
    assert again["passed"], again.get("traceback") or again["invariants"]
    killed = [e["node"] for e in first["timeline"] if e["action"] == "kill -9"]
    assert killed and killed == [e["node"] for e in again["timeline"] if e["action"] == "kill -9"]


def test_the_command_line_refuses_a_trace_it_cannot_replay_in_one_line(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"scenarios": [_entry("junk-flood")]}))
    result = subprocess.run([sys.executable, "node.py", "faults", "--replay", str(trace)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"node.py faults: --replay {trace}: junk-flood: its schedule does more than its timeline records (sends, "
        "votes, fuzz cases, clock changes); rerun it with --scenario junk-flood --seed 3"]
