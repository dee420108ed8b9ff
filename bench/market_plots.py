"""PNG plots of a bench.market report (matplotlib, Agg backend: no display needed).

    python -m bench.market_plots bench/results/market.json --out bench/results
    python -m bench.market_plots bench/results/market.json --markdown   # docs/auction.md tables

market_ring_share.png    a standing ring of 2: its win share per window of rounds, per variant
market_ring_profit.png   that ring's cumulative profit over rounds, per variant
market_honest.png        no ring: honest bidders still in the market, and the overpayment
                         against the lowest bid, per window, per variant
market_false_positives.png  no ring: honest bidders whose w rose, and their share of bids in
                         a suspect class, per variant
market_ring_size.png     ring size 1-4: win share, and the round its members' w first rose
market_ring_price.png    how low the ring bids (% of the base cost): win share, w rise
market_predation.png     a ring of 3 bids low for half the run, then raises: its win share
                         and the honest bidders left
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after the backend choice
from matplotlib.ticker import MaxNLocator  # noqa: E402

WIDE = (10, 4.2)


STYLES = {"paper": {"ls": "--", "marker": "o"}, "shipped": {"ls": "-", "marker": "s"}}


def _lines(axis: Any, report: dict[str, Any], runs: dict[str, Any], key: str, cumulative: bool = False) -> None:
    """One line per distinct series; variants with identical series share a line and a
    legend entry ("paper = shipped"), so no line hides another."""
    groups: dict[tuple[tuple[int, ...], tuple[float, ...]], list[str]] = {}
    for name, run in runs.items():
        values = run[key]
        if cumulative:
            values = [sum(values[: i + 1]) for i in range(len(values))]
        groups.setdefault((tuple(run["rounds_by_window"]), tuple(values)), []).append(name)
    for (xs, values), names in groups.items():
        lead = next((n for n in names if n in STYLES), names[0])
        style = STYLES.get(lead, {"ls": "-", "marker": "."})
        label = textwrap.fill(" = ".join(names), 30)
        axis.plot(xs, values, ms=4, label=label, lw=2.5 if lead in STYLES else 1.2, **style)
    axis.set_xlabel("rounds (auctions) so far")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend_outside(axis: Any) -> None:
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _caption(fig: Any, text: str) -> None:
    fig.text(0.01, 0.01, text, fontsize=8, ha="left", va="bottom", wrap=True)


def ring_share(report: dict[str, Any], out: Path) -> Path:
    fig, axis = plt.subplots(figsize=WIDE)
    _lines(axis, report, report["variants"], "ring_win_share_by_window")
    axis.set_ylabel(f"ring's share of wins per {report['window_rounds']} rounds")
    axis.set_ylim(-0.05, 1.05)
    axis.set_title("A ring of 2 bidding just above P_min, against 6 honest bidders")
    _legend_outside(axis)
    _caption(fig, "Each line is one mechanism variant (docs/auction.md). Lower is better: a ring that "
                  "keeps winning is not deterred.")
    return _save(fig, out / "market_ring_share.png")


def ring_profit(report: dict[str, Any], out: Path) -> Path:
    fig, axis = plt.subplots(figsize=WIDE)
    _lines(axis, report, report["variants"], "ring_profit_by_window", cumulative=True)
    axis.set_ylabel("ring's cumulative profit, tokens")
    axis.axhline(0, color="black", lw=0.8)
    axis.set_title("Profit of the ring of 2 (price - its cost, on the rounds it wins)")
    _legend_outside(axis)
    _caption(fig, "Bidding below cost loses money; predation pays only if honest bidders leave "
                  "and the ring can raise (market_predation.png).")
    return _save(fig, out / "market_ring_profit.png")


def honest(report: dict[str, Any], out: Path) -> Path:
    fig, (left, right) = plt.subplots(2, 1, figsize=(10, 8))  # one legend each: their lines group differently
    _lines(left, report, report["normal"], "honest_active_by_window")
    left.set_ylabel("honest bidders still bidding")
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_title("No ring: honest bidders left")
    _lines(right, report, report["normal"], "overpay_percent_by_window")
    right.set_ylabel("price paid over the lowest bid, %")
    right.set_title("No ring: cost of the coupons to devices")
    _legend_outside(left)
    _legend_outside(right)
    _caption(fig, f"An honest bidder leaves after {report['patience']} auctions lost in a row. Overpayment "
                  "compares the winner's price with the lowest valid bid of the same auction: 0 % with one "
                  "bidder left is a monopoly, not a bargain.")
    return _save(fig, out / "market_honest.png")


def false_positives(report: dict[str, Any], out: Path) -> Path:
    names = list(report["normal"])
    runs = [report["normal"][n] for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    bars = left.bar(names, [r["honest_w_raised"] for r in runs], color="#c44e52")
    left.bar_label(bars)
    left.set_ylabel(f"honest bidders (of {runs[0]['scenario']['honest']}) whose w rose")
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_title("False positives, no ring")
    bars = right.bar(names, [100 * r["honest_suspect_rate"] for r in runs], color="#8172b2")
    right.bar_label(bars, fmt="%.0f")
    right.set_ylabel("honest bids in a suspect class, %")
    right.set_title("How often honest bidders are suspected")
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=35, labelsize=8)
    _caption(fig, f"{runs[0]['rounds']} auctions per variant, same seed and bidders for every variant.")
    return _save(fig, out / "market_false_positives.png")


def _sweep(report: dict[str, Any], out: Path, key: str, xlabel: str, title: str, name: str) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for variant, runs in report[key].items():
        xs = [int(x) for x in runs]
        style = STYLES.get(variant, {"ls": "-", "marker": "."})
        left.plot(xs, [r["ring_win_share"] for r in runs.values()], label=variant, **style)
        first = [min((w for w in r["ring_w_rounds"] if w is not None), default=None) for r in runs.values()]
        right.plot([x for x, f in zip(xs, first, strict=True) if f is not None],
                   [f for f in first if f is not None], label=variant, **style)
    left.set_ylabel("ring's share of wins")
    left.set_ylim(-0.05, 1.05)
    right.set_ylabel("round a ring member's w first rose")
    for axis in (left, right):
        axis.set_xlabel(xlabel)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_title(title)
    right.set_title("Detection (missing point: never flagged)")
    _legend_outside(right)
    _caption(fig, f"{next(iter(next(iter(report[key].values())).values()))['rounds']} auctions per point, 6 "
                  "honest bidders.")
    return _save(fig, out / name)


def ring_size(report: dict[str, Any], out: Path) -> Path:
    return _sweep(report, out, "ring_sizes", "ring size k (members bidding low together)",
                  "Ring size: win share", "market_ring_size.png")


def ring_price(report: dict[str, Any], out: Path) -> Path:
    return _sweep(report, out, "ring_prices", "ring's low bid, % of the type's base cost",
                  "How deep the ring undercuts", "market_ring_price.png")


def predation(report: dict[str, Any], out: Path) -> Path:
    fig, (left, right) = plt.subplots(2, 1, figsize=(10, 8))
    _lines(left, report, report["predation"], "ring_win_share_by_window")
    left.set_ylabel("ring's share of wins per window")
    left.set_ylim(-0.05, 1.05)
    left.set_title("Ring of 3: low for half the run, then just below P_max")
    _lines(right, report, report["predation"], "honest_active_by_window")
    right.set_ylabel("honest bidders still bidding")
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_title("Honest bidders left")
    _legend_outside(left)
    _legend_outside(right)
    _caption(fig, "The paper's scenario (IV.B): collude low until the others withdraw, then raise. "
                  "beta-0 is a plain lowest-price auction with the same k-means check.")
    return _save(fig, out / "market_predation.png")


def markdown(report: dict[str, Any]) -> str:
    """The tables of docs/auction.md, from a report."""
    honest = next(iter(report["normal"].values()))["scenario"]["honest"]
    lines = ["| variant | ring of 2: share of wins | ring w first rose (round, from 0: 2 = 3rd auction) | "
             f"ring profit | no ring: honest w raised (of {honest}) | honest bids suspected | honest dropouts | "
             "overpay vs lowest bid |", "|---|---|---|---|---|---|---|---|"]
    for name, ring in report["variants"].items():
        normal = report["normal"][name]
        first = ", ".join("never" if r is None else str(r) for r in ring["ring_w_rounds"])
        lines.append(f"| {name} | {ring['ring_win_share']:.0%} | {first} | {ring['ring_profit']} | "
                     f"{normal['honest_w_raised']} | {normal['honest_suspect_rate']:.0%} | "
                     f"{normal['honest_dropouts']} | {normal['overpay_percent']} % |")
    for key, label in (("ring_sizes", "ring size"), ("ring_prices", "ring's low bid, % of base cost")):
        if not report[key]:
            continue
        columns = list(next(iter(report[key].values())))
        lines += ["", f"| {label} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        for name, runs in report[key].items():
            cells = []
            for run in runs.values():
                rose = [r for r in run["ring_w_rounds"] if r is not None]
                cells.append(f"{run['ring_win_share']:.0%} wins, w at {min(rose) if rose else 'never'}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if report["predation"]:
        lines += ["", "| predation (ring of 3, low then high) | ring wins, low half | ring wins, high half | "
                  "ring profit | honest left at the end | overpay |", "|---|---|---|---|---|---|"]
        for name, run in report["predation"].items():
            shares = run["ring_win_share_by_window"]
            half = len(shares) // 2
            low, high = sum(shares[:half]) / max(1, half), sum(shares[half:]) / max(1, len(shares) - half)
            lines.append(f"| {name} | {low:.0%} | {high:.0%} | {run['ring_profit']} | "
                         f"{run['honest_active_by_window'][-1]} | {run['overpay_percent']} % |")
    return "\n".join(lines) + "\n"


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    plots = [ring_share, ring_profit, honest, false_positives]
    if report["ring_sizes"]:
        plots += [ring_size, ring_price, predation]
    return [plot(report, out) for plot in plots]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.market_plots", description=__doc__.split("\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--markdown", action="store_true", help="print the docs/auction.md tables instead")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text())
    if args.markdown:
        print(markdown(report), end="")
        return 0
    for path in write_plots(report, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
