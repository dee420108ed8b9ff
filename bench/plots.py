"""PNG plots of a bench.suite report (matplotlib, Agg backend: no display needed).

    python -m bench.plots bench/results/suite.json --out bench/results

throughput.png    committed tx/s and p50/p99 latency per case (n = 3/5, transfers/DSC, open loop)
latency_cdf.png   latency distribution of the closed-loop and the open-loop runs
latency_vs_rate.png  open loop, n = 3: achieved tx/s and p50/p99 latency per offered rate
state_growth.png  tx/s and p99 as the genesis state grows (10^3 .. 10^5 accounts)
timeline.png      transactions per final block over time in the n = 3 closed-loop run
consensus.png     empty/full blocks per second, view-change times, catch-up trace
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend choice

LABELS = {"n3_transfer": "n=3 transfer", "n5_transfer": "n=5 transfer", "n3_dsc": "n=3 DSC",
          "n5_dsc": "n=5 DSC", "n3_dsc_2000_tx_blocks": "n=3 DSC\n2000-tx blocks",
          "n3_transfer_open": "n=3 transfer\nopen loop"}
LEGEND_BELOW = -0.2  # axes fraction: under the tick labels and the axis label, off the data


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _cases(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every load case of the report, the known ones in LABELS order, then any other."""
    known = [n for n in LABELS if n in report["load"]]
    return [(n, report["load"][n]) for n in known + sorted(set(report["load"]) - set(known))]


def _legend(axis: Any, *twins: Any, below: float = LEGEND_BELOW) -> None:
    """One legend for the series of an axis and its twins, under the axis (never on the data)."""
    handles, labels = axis.get_legend_handles_labels()
    for twin in twins:
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    axis.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, below), ncol=min(3, len(labels)),
                fontsize=8, frameon=False)


def _caption(fig: Any, report: dict[str, Any]) -> None:
    m = report.get("machine", {})
    fig.supxlabel(f"{m.get('cpus')} cores ({m.get('cpu_model', '')}), 1-min load at start "
                  f"{m.get('load_1m_at_start')}", fontsize=8)


def throughput(report: dict[str, Any], out: Path) -> Path:
    cases = _cases(report)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    names = [_label(n) for n, _ in cases]
    tps = [c["tps"] for _, c in cases]
    bars = left.bar(names, tps, color=["#4c72b0" if "open" not in n else "#8c8c8c" for n, _ in cases])
    left.bar_label(bars, fmt="%.0f")
    left.axhline(1000, color="red", ls="--", lw=1, label="goal 1,000 tx/s (n=3)")
    left.set_ylabel("committed tx/s")
    left.set_title("Throughput (closed loop unless noted)")
    _legend(left, below=-0.25)
    xs = range(len(cases))
    p50 = [c["latency_ms"]["p50"] or 0 for _, c in cases]
    p99 = [c["latency_ms"]["p99"] or 0 for _, c in cases]
    right.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50")
    right.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99")
    right.set_xticks(list(xs), names)
    right.set_yscale("log")
    right.set_ylabel("latency, ms (send -> final block seen)")
    right.set_title("Latency")
    _legend(right, below=-0.25)
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8)
    _caption(fig, report)
    return _save(fig, out / "throughput.png")


def latency_cdf(report: dict[str, Any], out: Path) -> Path:
    fig, axis = plt.subplots(figsize=(7, 5), layout="constrained")
    for name, case in _cases(report):
        if not case.get("latency_percentiles_ms"):
            continue
        points = sorted((float(p), v) for p, v in case["latency_percentiles_ms"].items() if v is not None)
        axis.plot([v for _, v in points], [p for p, _ in points], marker=".", label=_label(name).replace("\n", " "))
    axis.set_xscale("log")
    axis.set_xlabel("latency, ms")
    axis.set_ylabel("percentile")
    axis.axvline(1000, color="red", ls="--", lw=1, label="1 s")
    axis.set_title("Latency distribution")
    _legend(axis, below=-0.14)
    _caption(fig, report)
    return _save(fig, out / "latency_cdf.png")


def latency_vs_rate(report: dict[str, Any], out: Path) -> Path:
    cases = report.get("rate_sweep", [])
    fig, left = plt.subplots(figsize=(7, 4.8), layout="constrained")
    offered = [c["offered_rate"] for c in cases]
    left.plot(offered, [c["latency_ms"]["p50"] for c in cases], marker="o", label="p50")
    left.plot(offered, [c["latency_ms"]["p99"] for c in cases], marker="s", label="p99")
    left.axhline(1000, color="red", ls="--", lw=1, label="1 s")
    left.set_yscale("log")
    left.set_xlabel("offered load, tx/s (open loop, n=3 transfers)")
    left.set_ylabel("latency, ms (send -> final block seen)")
    right = left.twinx()
    right.plot(offered, [c["tps"] for c in cases], color="#55a868", marker="^", ls=":", label="achieved tx/s")
    right.set_ylabel("achieved committed tx/s", color="#55a868")
    right.set_ylim(bottom=0)
    _legend(left, right, below=-0.16)
    left.set_title("Latency vs offered rate")
    _caption(fig, report)
    return _save(fig, out / "latency_vs_rate.png")


def state_growth(report: dict[str, Any], out: Path) -> Path:
    cases = report.get("state_growth", [])
    fig, left = plt.subplots(figsize=(7, 4.8), layout="constrained")
    accounts = [c["accounts"] for c in cases]
    left.plot(accounts, [c["tps"] for c in cases], marker="o", color="#4c72b0", label="tx/s")
    left.set_xscale("log")
    left.set_xlabel("accounts in the state (genesis)")
    left.set_ylabel("committed tx/s", color="#4c72b0")
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.plot(accounts, [c["latency_ms"]["p99"] for c in cases], marker="s", color="#dd8452", label="p99 ms")
    right.set_ylabel("p99 latency, ms", color="#dd8452")
    right.set_ylim(bottom=0)
    left.set_title("Transfers (n=3, closed loop) as the state grows")
    _legend(left, right, below=-0.16)
    _caption(fig, report)
    return _save(fig, out / "state_growth.png")


def timeline(report: dict[str, Any], out: Path) -> Path:
    case = report["load"]["n3_transfer"]
    log = case.get("block_log", [])
    fig, axis = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    twins = []
    if log:
        times = [b[0] for b in log]
        sizes = [b[2] for b in log]
        axis.bar(times, sizes, width=0.08, color="#4c72b0", label="txs per final block")
        total = 0
        cumulative = []
        for size in sizes:
            total += size
            cumulative.append(total)
        twin = axis.twinx()
        twin.plot(times, cumulative, color="#55a868", label="committed (cumulative)")
        twin.set_ylabel("committed transactions", color="#55a868")
        twin.set_ylim(bottom=0)
        twins.append(twin)
    axis.set_xlabel("seconds since the first send")
    axis.set_ylabel("transactions in the block")
    axis.set_title(f"n=3 closed loop, {case['committed']} transfers: blocks as they became final")
    _legend(axis, *twins, below=-0.16)
    _caption(fig, report)
    return _save(fig, out / "timeline.png")


def consensus_plot(report: dict[str, Any], out: Path) -> Path:
    fig, (rates, views, sync) = plt.subplots(1, 3, figsize=(14, 5), layout="constrained")
    empty = report["empty_blocks"]["blocks_per_s"] or 0
    full = report["full_blocks"]["blocks_per_s"] or 0
    bars = rates.bar(["empty blocks\n(1 ms interval)", f"{report['full_blocks']['block_txs']}-tx blocks"],
                     [empty, full], color=["#8172b3", "#4c72b0"])
    rates.bar_label(bars, fmt="%.1f")
    rates.axhline(100, color="red", ls="--", lw=1, label="goal 100 empty blocks/s")
    rates.set_ylabel("final blocks per second (n=3)")
    _legend(rates, below=-0.22)
    rates.set_title("Block rate")
    trial_count = 0
    for key, label, offset in (("view_change", "default timeouts", -0.2), ("view_change_tight", "tight", 0.2)):
        trials = report.get(key, {}).get("trials", [])
        trial_count = max(trial_count, len(trials))
        views.bar([i + offset for i in range(len(trials))], [t["seconds"] or 0 for t in trials], width=0.4,
                  label=f"{label}: {_timeouts(report[key].get('timeouts'))}" if trials else label)
    views.set_xticks(range(trial_count), [str(i + 1) for i in range(trial_count)])  # trials are counted
    views.axhline(3, color="red", ls="--", lw=1, label="goal 3 s")
    views.set_xlabel("trial (SIGKILL of the current primary)")
    views.set_ylabel("seconds to the first final block of a new view")
    views.set_title("View change")
    _legend(views, below=-0.14)
    trace = report["catch_up"].get("trace", [])
    if trace:
        sync.plot([p[0] for p in trace], [p[1] for p in trace], color="#55a868", label="restarted node")
        sync.axhline(report["catch_up"]["target_height"], color="grey", ls=":", lw=1, label="cluster height")
    sync.set_xlabel("seconds since the restart")
    sync.set_ylabel("restarted node's final height")
    sync.set_title(f"Catch-up: {report['catch_up'].get('blocks_per_s')} blocks/s")
    _legend(sync, below=-0.14)
    _caption(fig, report)
    return _save(fig, out / "consensus.png")


def _timeouts(timeouts: Any) -> str:
    if isinstance(timeouts, dict):
        return ", ".join(f"{k} {v}" for k, v in timeouts.items())
    return str(timeouts)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # the whole figure, legends and caption included: nothing is clipped at the edges
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return path


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    return [throughput(report, out), latency_cdf(report, out), latency_vs_rate(report, out), state_growth(report, out),
            timeline(report, out), consensus_plot(report, out)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("report", type=Path, help="a bench.suite JSON report")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    for path in write_plots(json.loads(args.report.read_text()), args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
