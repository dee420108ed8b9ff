"""bench.harness: a benchmark ended by SIGTERM (a CI timeout, an operator) stops its nodes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_terminated_bench_stops_its_nodes(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    script = tmp_path / "bench.py"
    script.write_text(f'''
import sys, time
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from bench.harness import bench_cluster
with bench_cluster(3, senders=1, directory=Path({str(tmp_path / "cluster")!r})) as cluster:
    open({str(pids_file)!r}, "w").write(" ".join(map(str, cluster.pids())))
    time.sleep(600)
''')
    bench = subprocess.Popen([sys.executable, str(script)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 240
        while not (pids_file.exists() and pids_file.read_text()):
            assert time.monotonic() < deadline and bench.poll() is None, "the cluster did not come up"
            time.sleep(0.2)
        pids = [int(p) for p in pids_file.read_text().split()]
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=120) == 128 + signal.SIGTERM
        assert not [pid for pid in pids if _alive(pid)], "node processes outlived their benchmark"
    finally:
        if bench.poll() is None:
            bench.kill()
        for pid in (int(p) for p in (pids_file.read_text().split() if pids_file.exists() else [])):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
