"""The `node.py cluster` supervisor's decisions (cli/cluster.py), on stand-in processes: a
node that dies is reported with how to restart it, restarted under --restart on-failure up
to --restart-max times, and a node stopped or killed on request stays down."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import cli.cluster as cluster
from cli.cluster import Supervisor
from runtime.cluster import ClusterLayout


class FakeProcess:
    _pids = iter(range(1000, 2000))

    def __init__(self) -> None:
        self.pid = next(self._pids)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class FakeProcesses:
    def __init__(self, layout: ClusterLayout) -> None:
        self.layout = layout
        self.processes: dict[int, FakeProcess] = {i: FakeProcess() for i in range(layout.nodes)}
        self.started: list[int] = []
        self.signals: list[tuple[int, int]] = []
        self.manifests: list[dict[int, str]] = []

    def start_node(self, i: int) -> FakeProcess:
        self.started.append(i)
        self.processes[i] = FakeProcess()
        return self.processes[i]

    def ready(self, i: int) -> bool:
        return True

    def stop_node(self, i: int, sig: int = signal.SIGTERM, timeout_s: float = 10) -> None:
        self.signals.append((i, sig))
        self.processes[i].returncode = -sig

    def write_manifest(self, states: dict[int, str] | None = None, supervisor: int | None = None) -> Path:
        self.manifests.append(dict(states or {}))
        return self.layout.directory / "cluster.json"


@pytest.fixture
def layout(tmp_path: Path) -> ClusterLayout:
    (tmp_path / cluster.CONTROL_DIR).mkdir()
    return ClusterLayout(tmp_path, 3, 30_000, bookkeepers=3)


def supervisor(layout: ClusterLayout, policy: str, restart_max: int = 2) -> tuple[Supervisor, FakeProcesses]:
    processes = FakeProcesses(layout)
    running = Supervisor(layout, processes, policy, restart_max, health_timeout_s=60)  # type: ignore[arg-type]
    for node in running.nodes.values():
        node.state = "up"
    return running, processes


def test_a_dead_node_is_reported_and_the_others_keep_running(layout, capsys) -> None:
    running, processes = supervisor(layout, "never")
    processes.processes[1].returncode = -signal.SIGKILL
    running._tick()
    out = capsys.readouterr().out
    assert "node1 (pid" in out and "exited with signal SIGKILL; the other nodes keep running" in out
    assert f"restart it: node.py node restart --cluster {layout.directory} --node 1" in out
    assert [running.nodes[i].state for i in range(3)] == ["up", "exited", "up"]
    assert processes.started == [] and processes.signals == []
    assert processes.manifests[-1] == {0: "up", 1: "exited", 2: "up"}
    running._tick()
    assert processes.started == []  # never: it stays down until asked


def test_on_failure_restarts_up_to_the_limit(layout, capsys, monkeypatch) -> None:
    monkeypatch.setattr(cluster, "RESTART_DELAY_S", 0.0)
    running, processes = supervisor(layout, "on-failure", restart_max=2)
    for attempt in (1, 2):
        processes.processes[0].returncode = 1
        running._tick()  # seen dead, restart scheduled
        running._tick()  # restarted
        assert processes.started == [0] * attempt and running.nodes[0].state == "starting"
        running._tick()
        assert running.nodes[0].state == "up"
        assert f"restart {attempt} of 2" in capsys.readouterr().out
    processes.processes[0].returncode = 1
    running._tick()
    running._tick()
    assert processes.started == [0, 0] and running.nodes[0].state == "exited"
    assert "restart it: node.py node restart" in capsys.readouterr().out


def test_requests_stop_kill_and_restart_one_node(layout, monkeypatch) -> None:
    monkeypatch.setattr(cluster, "RESTART_DELAY_S", 0.0)
    running, processes = supervisor(layout, "on-failure")
    control = layout.directory / cluster.CONTROL_DIR
    (control / "node2.request").write_text("kill\n")
    running._tick()
    assert processes.signals == [(2, signal.SIGKILL)] and running.nodes[2].state == "killed"
    assert '"ok": true' in (control / "node2.done").read_text()
    running._tick()
    assert processes.started == []  # killed on request: the policy leaves it down
    (control / "node2.request").write_text("restart\n")
    running._tick()
    assert processes.started == [2]
    running._tick()
    assert running.nodes[2].state == "up"
    (control / "node1.request").write_text("stop\n")
    running._tick()
    assert processes.signals[-1] == (1, signal.SIGTERM) and running.nodes[1].state == "stopped"
    (control / "node1.request").write_text("explode\n")
    running._tick()
    assert "unknown action 'explode'" in (control / "node1.done").read_text()
