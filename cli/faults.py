"""`node.py faults`: run fault-injection scenarios on real local clusters (docs/faults.md)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from cli.errors import UserError

FAULT_SCENARIOS_HELP = "a scenario name, or 'all'; 'list' prints them"


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "Run fault-injection scenarios on a real local cluster and check the invariants."
    p = verbs.add_parser("faults", help=text, description=text)
    p.set_defaults(run=cmd_faults)
    p.add_argument("--scenario", default="all", help=FAULT_SCENARIOS_HELP)
    p.add_argument("--seed", type=int, default=1, help="fixes the fault schedule (and the fuzz cases)")
    p.add_argument("--duration", type=float, default=20, help="seconds of the fault phase per scenario")
    p.add_argument("--iterations", type=int, default=50, help="kill -9 count of crash-loop")
    p.add_argument("--clients", type=int, default=4, help="concurrent workload clients")
    p.add_argument("--rate", type=float, default=0,
                   help="also an open-loop load of this many transfers per second (0: none); the long runs "
                        "use half the saturating figure of `node.py bench`")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--workdir", type=Path, help="where cluster directories go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep cluster directories (node logs) after the run")
    p.add_argument("--replay", type=Path, metavar="TRACE",
                   help="run again the scenarios a --json report recorded (their seed, load and the faults of "
                        "their timeline, at their times; --scenario picks some); --seed, --duration, --iterations, "
                        "--clients and --rate come from the trace")


def cmd_faults(args: argparse.Namespace) -> int:
    from faults import SCENARIOS, run_scenario, summary

    if args.replay is not None:
        return _replay(args)
    if args.scenario == "list":
        for name, scenario in SCENARIOS.items():
            print(f"{name:28} n={scenario.nodes}  {scenario.summary}")
        return 0
    names = list(SCENARIOS) if args.scenario == "all" else args.scenario.split(",")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise UserError(f"unknown scenario(s) {', '.join(unknown)}; `node.py faults --scenario list` names them")
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    report = {"seed": args.seed, "duration_s": args.duration, "rate": args.rate,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "scenarios": []}
    for name in names:
        print(f"-- running {name} (seed {args.seed}, {args.duration} s) ...", flush=True)
        entry = run_scenario(name, args.seed, args.duration, args.workdir, iterations=args.iterations,
                             clients=args.clients, keep=args.keep, rate=args.rate)
        report["scenarios"].append(entry)
        print(summary(entry), flush=True)
        if args.json:
            _write(args.json, report)
            if not entry["passed"] and SCENARIOS[name].replayable:
                print(f"   replay it: python node.py faults --replay {args.json} --scenario {name}", flush=True)
    passed = sum(1 for e in report["scenarios"] if e["passed"])
    report["passed"] = passed == len(report["scenarios"])
    print(f"\n{passed} of {len(report['scenarios'])} scenarios passed")
    if args.json:
        _write(args.json, report)
        print(f"report: {args.json}")
    return 0 if report["passed"] else 1


def _replay(args: argparse.Namespace) -> int:
    from faults import summary
    from faults.replay import NotReplayable, load_traces, replay

    try:
        traces = load_traces(args.replay, None if args.scenario == "all" else args.scenario.split(","))
    except NotReplayable as exc:
        raise UserError(f"--replay {args.replay}: {exc}") from exc
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    report: dict[str, Any] = {"replay_of": str(args.replay), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                              "scenarios": entries}
    for trace in traces:
        print(f"-- replaying {trace.scenario} (seed {trace.seed}, {trace.duration} s, {len(trace.events)} events "
              f"of {args.replay}) ...", flush=True)
        entry = replay(trace, args.workdir, keep=args.keep)
        entries.append(entry)
        print(summary(entry), flush=True)
        print(f"   replay: {entry['replay']['events']} events carried out; the same faults, targets and order: "
              f"{'yes' if entry['replay']['same_faults'] else 'NO'}", flush=True)
        if args.json:
            _write(args.json, report)
    passed = sum(1 for e in entries if e["passed"])
    report["passed"] = passed == len(entries)
    print(f"\n{passed} of {len(entries)} replays passed")
    if args.json:
        _write(args.json, report)
        print(f"report: {args.json}")
    return 0 if report["passed"] else 1


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
