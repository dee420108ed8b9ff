"""`node.py demo` itself, as `make demo` runs it: a consortium of agent processes on a fresh
3-node cluster, exit status 0 only when the report says everything behaved. Slow (3-5
minutes on the shared 2-core box); the same plan runs in one process in
tests/test_diagnosis_consortium.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from diagnosis.demo import PLAN

REPO = Path(__file__).resolve().parent.parent
DEMO_S_MAX = 900


@pytest.mark.slow
@pytest.mark.timeout(DEMO_S_MAX + 60)
def test_node_py_demo_exits_0_and_its_report_is_ok(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    done = subprocess.run([sys.executable, "node.py", "demo", "--quiet", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=DEMO_S_MAX)
    report = json.loads(out.read_text())
    assert done.returncode == 0 and report["ok"], (done.stderr[-2000:], report.get("figures"))
    assert report["tokens"]["ok"] and not report["lost_flows"] and not report["timed_out"]
    parties = len(PLAN.nodes) + sum(n.crew for n in PLAN.nodes) + len(PLAN.devices) + len(PLAN.phones())
    assert len(report["agents"]) == parties  # every party ran as a process and served its metrics
