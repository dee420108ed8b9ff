"""Overload: does the cluster keep its throughput as the backlog grows, next to what one
core can apply, and on a machine half as fast? All in one run, so the figures are ratios
measured on the same machine at the same time (issue 10):

- ledger: bench.ledger's replica-side tx/s on one core (verify + execute + store);
- backlog_W: a 3-node cluster under a closed loop that keeps W transactions sent but not
  final (W = 4,000, 20,000, 100,000; the mempool holds 20,000, so beyond it the nodes push
  back and the backlog waits at the client); W + 20,000 transactions per run;
- pinned: every node process pinned to one core (three replicas sharing it: a machine
  several times slower than this one) under a steady load; view changes are counted.

    python -m bench.overload --json bench/results/overload.json [--quick]

Goals: backlog_100000 >= 0.90 x backlog_4000; backlog_4000 >= 0.40 x ledger; no view
change when pinned.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench import ledger
from bench.harness import load_average, machine
from bench.load import LoadOptions, run_load, say

BACKLOGS = (4_000, 20_000, 100_000)
QUICK_BACKLOGS = (500, 2_000)
STEADY_TXS = 20_000  # sent beyond the backlog in each run
LEDGER_TXS = 20_000
PINNED_TXS = 10_000
PINNED_CPU = {0}
RUN_TIMEOUT_S = 900
GOALS = {"backlog_largest_vs_smallest": 0.90, "cluster_vs_ledger": 0.40}


def run(backlogs: tuple[int, ...], steady_txs: int, ledger_txs: int, pinned_txs: int) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine(), "goals": GOALS}
    say(f"[overload] ledger: {ledger_txs} transfers applied on one core ...")
    report["ledger"] = ledger.run(ledger_txs, 500)
    report["backlog"] = {}
    for backlog in backlogs:
        txs = backlog + steady_txs
        say(f"[overload] backlog {backlog}: {txs} transfers, closed loop ...")
        result, _ = run_load(LoadOptions(nodes=3, txs=txs, window=backlog, timeout_s=RUN_TIMEOUT_S, progress=False))
        report["backlog"][str(backlog)] = result
        say(f"[overload] backlog {backlog}: {sustained_tps(result)} tx/s, {result['committed']} of "
            f"{result['submitted']} final, p99 {result['latency_ms']['p99']} ms, "
            f"views {result['view_at_start']} -> {result['view_at_end']}, pushed back {result['pushed_back_batches']}")
    say(f"[overload] pinned to CPU {sorted(PINNED_CPU)}: {pinned_txs} transfers ...")
    pinned, _ = run_load(LoadOptions(nodes=3, txs=pinned_txs, cpus=PINNED_CPU, timeout_s=RUN_TIMEOUT_S,
                                     progress=False))
    report["pinned"] = pinned
    smallest, largest = (sustained_tps(report["backlog"][str(b)]) for b in (backlogs[0], backlogs[-1]))
    report["ratios"] = {
        "backlog_largest_vs_smallest": round(largest / smallest, 3),
        "cluster_vs_ledger": round(smallest / report["ledger"]["tps"], 3),
        "pinned_view_changes": pinned["view_at_end"] - pinned["view_at_start"],
    }
    report["load_1m_at_end"] = round(load_average(), 2)
    say(f"[overload] ratios {report['ratios']}")
    return report


def sustained_tps(result: dict[str, Any]) -> float:
    """Committed transactions per second of a run. `tps` spans the first send to the last
    commit: a run that timed out with transactions still pending (the 100,000 backlog
    stalled for 800 s once) counts its whole time instead, or a stall would not show."""
    if result["committed"] == result["submitted"]:
        return float(result["tps"])
    return round(int(result["committed"]) / float(result["cpu"]["wall_s"]), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every part")
    args = parser.parse_args(argv)
    if args.quick:
        report = run(QUICK_BACKLOGS, 1_000, 2_000, 1_000)
    else:
        report = run(BACKLOGS, STEADY_TXS, LEDGER_TXS, PINNED_TXS)
    report["quick"] = args.quick
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
