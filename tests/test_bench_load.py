"""`node.py bench` on a real 3-process cluster with a tiny load: the JSON report has every
field, every acknowledged transaction is committed, and --hashes lists them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.load import LoadOptions, percentile, run_load, senders_needed

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(120)


def test_node_py_bench_reports_and_commits_everything(tmp_path: Path) -> None:
    out, hashes = tmp_path / "bench.json", tmp_path / "hashes.txt"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "node.py"), "bench", "--nodes", "3", "--txs", "150", "--concurrency", "3",
         "--batch", "20", "--json", str(out), "--hashes", str(hashes), "--timeout", "60"],
        cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(out.read_text())
    for key in ("nodes", "t", "submitted", "acked", "committed", "seconds", "tps", "latency_ms"):
        assert key in report, key
    assert (report["nodes"], report["t"]) == (3, 1)
    assert report["submitted"] == 150
    assert report["committed"] == report["acked"] == 150
    assert report["tps"] > 0
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert report["receipts"]["status_ok"] == report["receipts"]["checked"] > 0
    listed = hashes.read_text().split()
    assert len(listed) == 150 and len(set(listed)) == 150
    assert all(h.startswith("0x") and len(h) == 66 for h in listed)
    assert "committed" in completed.stderr  # progress lines


def test_percentile_and_sender_count() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) is None
    assert senders_needed(10_000) * 48 >= 10_000  # every sender stays inside the mempool nonce window


@pytest.mark.slow
def test_a_burst_of_3000_transfers_goes_through_without_a_view_change() -> None:
    """Marked slow: whether a view changes depends on the machine's load (two busy loops
    beside it made it fail one run in two), so it is a regression check for `make
    test-all` and bench.overload reports the same count, not a default test.

    Issue 12's `bench --nodes 3 --txs 3000` ran at 47-61 tx/s with a 57 s gap after block 1:
    the followers suspected a working primary (its FINAL left only after it built the next
    block, and their stall clocks ran on a time from before their own execution), so views
    churned. A burst must now leave the view alone."""
    result, acked = run_load(LoadOptions(nodes=3, txs=3_000, progress=False, timeout_s=120))
    assert result["committed"] == result["acked"] == len(acked) == 3_000
    assert result["view_at_end"] == result["view_at_start"], result["block_log"]
