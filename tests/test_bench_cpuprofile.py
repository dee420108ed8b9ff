"""bench.cpuprofile charges a function the CPU it used, not the time it waited."""

from __future__ import annotations

import pstats
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = '''
import sys, time

def waits():
    time.sleep(0.5)

def works():
    return sum(i * i for i in range(200_000))

waits()
works()
sys.exit(0)  # a program that exits by SystemExit still leaves its profile
'''


def _cumtime(stats: pstats.Stats, name: str) -> float:
    raw = stats.stats  # type: ignore[attr-defined]
    return next(cum for (_, _, func), (_, _, _, cum, _) in raw.items() if func == name)


def test_waiting_costs_nothing_and_work_is_counted(tmp_path: Path) -> None:
    script, out = tmp_path / "prog.py", tmp_path / "prog.prof"
    script.write_text(SCRIPT)
    subprocess.run([sys.executable, "-m", "bench.cpuprofile", str(out), str(script)], cwd=ROOT, check=True,
                   timeout=120)
    stats = pstats.Stats(str(out))
    assert _cumtime(stats, "waits") < 0.25  # the wall clock would say 0.5 s
    assert _cumtime(stats, "works") > 0


def test_usage_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.cpuprofile"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and done.stderr.strip().startswith("usage:")

