"""`node.py cluster`: a local cluster under a supervisor, and `node.py node`: stop, kill or
restart one node of it.

The supervisor refuses before starting anything when a port is taken or the directory holds
another shape of cluster; it reports "up" only for nodes that answer with this cluster's
chain id and genesis. When a node dies the others keep running: the supervisor says which
node died, how, and how to restart it, and restarts it itself under `--restart on-failure`.
`node.py node ACTION` writes DIR/control/node{i}.request; the supervisor carries it out,
answers in DIR/control/node{i}.done and keeps cluster.json's states current.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.commands import DEFAULT_CLUSTER_DIR, initialise, planned_layout
from cli.errors import EXIT_FAILED, UserError
from runtime.cluster import ClusterLayout, ClusterProcesses, describe_exit, discover, port_free

ACTIONS = ("stop", "kill", "restart")
RESTART_POLICIES = ("never", "on-failure")
TICK_S = 0.2
RESTART_DELAY_S = 1.0  # under on-failure: a node that dies is started again after this long
CONTROL_DIR = "control"
DEFAULT_NODES = 3
DEFAULT_BASE_PORT = 8545


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = ("Run a local cluster, one OS process per node, until SIGINT/SIGTERM: init the directory when it "
            "is empty, refuse taken ports, supervise the nodes (one dying leaves the others running).")
    p = verbs.add_parser("cluster", help=text, description=text)
    p.set_defaults(run=cmd_cluster)
    p.add_argument("--nodes", type=int, help=f"bookkeepers of a new cluster (default: {DEFAULT_NODES}; an existing "
                                               "directory keeps its own)")
    p.add_argument("--dir", type=Path, default=DEFAULT_CLUSTER_DIR, help="cluster directory")
    p.add_argument("--base-port", type=int, help=f"RPC port of node0 of a new cluster; node i: RPC PORT+i, p2p "
                                                   f"PORT+100+i (default: {DEFAULT_BASE_PORT}; an existing "
                                                   "directory keeps its own)")
    p.add_argument("--observers", type=int, help="extra non-voting nodes of a new cluster (default: 0)")
    p.add_argument("--restart", choices=RESTART_POLICIES, default="never",
                   help="on-failure: start a node that died again (not one stopped or killed by `node.py node`)")
    p.add_argument("--restart-max", type=int, default=5, help="restarts per node under --restart on-failure")
    p.add_argument("--health-timeout", type=float, default=60, help="seconds a node has to answer /health")

    text = "Stop, kill (SIGKILL) or restart one node of a cluster that `node.py cluster` runs."
    p = verbs.add_parser("node", help=text, description=text)
    p.set_defaults(run=cmd_node)
    p.add_argument("action", choices=ACTIONS, help="stop: SIGTERM; kill: SIGKILL; restart: stop if running, start")
    p.add_argument("--cluster", type=Path, default=DEFAULT_CLUSTER_DIR, help="cluster directory")
    p.add_argument("--node", type=int, required=True, help="node index (node0 is 0)")
    p.add_argument("--timeout", type=float, default=90, help="seconds to wait for the supervisor's answer")


# cluster ----------------------------------------------------------------------------------
def cmd_cluster(args: argparse.Namespace) -> int:
    layout, new = _layout(args)
    _refuse_second_supervisor(layout.directory)
    _refuse_taken_ports(layout)  # before writing anything
    if new:
        initialise(layout.directory, layout.bookkeeper_count, layout.base_port, layout.nodes - layout.bookkeeper_count)
    supervisor = Supervisor(layout, ClusterProcesses(layout), args.restart, args.restart_max, args.health_timeout)
    return supervisor.run()


def _layout(args: argparse.Namespace) -> tuple[ClusterLayout, bool]:
    """The cluster to run and whether `init` must write it first; refuses changing the shape
    of an existing one (the options would be silently ignored otherwise)."""
    directory: Path = args.dir
    if not (directory / "genesis.toml").exists():
        nodes = DEFAULT_NODES if args.nodes is None else args.nodes
        base_port = DEFAULT_BASE_PORT if args.base_port is None else args.base_port
        return planned_layout(directory, nodes, base_port, args.observers or 0), True
    layout = discover(directory)
    have = {"--nodes": layout.bookkeeper_count, "--base-port": layout.base_port,
            "--observers": layout.nodes - layout.bookkeeper_count}
    given = {"--nodes": args.nodes, "--base-port": args.base_port, "--observers": args.observers}
    changed = [f"{option} {given[option]} (it has {have[option]})" for option in have
               if given[option] is not None and given[option] != have[option]]
    if changed:
        raise UserError(f"{directory} already holds a cluster of {layout.bookkeeper_count} bookkeepers on base port "
                        f"{layout.base_port}; refusing {', '.join(changed)}. Run it as it is (drop the option), or "
                        f"give a new --dir for another shape")
    return layout, False


def _refuse_second_supervisor(directory: Path) -> None:
    pid = supervisor_pid(directory)
    if pid is not None:
        raise UserError(f"{directory} is already running under `node.py cluster` (pid {pid}); stop it with Ctrl-C "
                        f"there, or act on one node with `node.py node stop|kill|restart --cluster {directory}`")


def _refuse_taken_ports(layout: ClusterLayout) -> None:
    taken = [f"{port} (node{i} {what})" for i in range(layout.nodes)
             for what, port in layout.ports(i).items() if not port_free(port)]
    if taken:
        raise UserError(f"ports in use by another process: {', '.join(taken)}; stop what holds them (another "
                        "cluster?) or use another directory with another --base-port", EXIT_FAILED)


@dataclass
class NodeState:
    state: str = "starting"  # starting, up, exited, stopped, killed
    restarts: int = 0
    restart_at: float | None = None  # monotonic time of a pending restart under on-failure
    started_at: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, layout: ClusterLayout, processes: ClusterProcesses, policy: str, restart_max: int,
                 health_timeout_s: float) -> None:
        self.layout = layout
        self.processes = processes
        self.policy = policy
        self.restart_max = restart_max
        self.health_timeout_s = health_timeout_s
        self.nodes = {i: NodeState() for i in range(layout.nodes)}
        self.control = layout.directory / CONTROL_DIR
        self.stopping = False

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        self.control.mkdir(exist_ok=True)
        for stale in self.control.glob("node*.*"):
            stale.unlink()
        print(f"starting {self.layout.nodes} nodes from {self.layout.directory} ...", flush=True)
        try:
            self.processes.start_all()
            try:
                self.processes.wait_healthy(self.health_timeout_s, progress=True)
            except (RuntimeError, TimeoutError) as exc:
                raise UserError(f"cluster did not start: {exc}", EXIT_FAILED) from None
            for state in self.nodes.values():
                state.state = "up"
            manifest = self._manifest()
            print(f"cluster up: {manifest}  (Ctrl-C stops every node; `node.py node stop|kill|restart "
                  f"--cluster {self.layout.directory} --node I` acts on one)", flush=True)
            while not self.stopping:
                self._tick()
                time.sleep(TICK_S)
        finally:
            print("stopping nodes ...", flush=True)
            self.processes.stop_all()
            self.processes.write_manifest({i: "stopped" for i in self.nodes})
        failed = [i for i, s in self.nodes.items() if s.state == "exited"]
        return EXIT_FAILED if failed else 0

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def _manifest(self) -> Path:
        return self.processes.write_manifest({i: s.state for i, s in self.nodes.items()}, supervisor=os.getpid())

    def _tick(self) -> None:
        changed = False
        for request in sorted(self.control.glob("node*.request")):
            self._serve(request)
            changed = True
        now = time.monotonic()
        for i, node in self.nodes.items():
            process = self.processes.processes[i]
            if node.state in ("up", "starting") and process.poll() is not None:
                changed = True
                self._died(i, node, process.returncode, now)
            elif node.state == "starting":
                changed |= self._check_start(i, node, now)
            elif node.state == "exited" and node.restart_at is not None and now >= node.restart_at:
                print(f"node{i}: restarting (--restart on-failure, restart {node.restarts + 1} of "
                      f"{self.restart_max})", flush=True)
                node.restarts += 1
                self._start(i, node)
                changed = True
        if changed:
            self._manifest()

    def _died(self, i: int, node: NodeState, returncode: int, now: float) -> None:
        node.state = "exited"
        log = self.layout.node_dir(i) / "node.log"
        print(f"node{i} (pid {self.processes.processes[i].pid}) exited with {describe_exit(returncode)}; the other "
              f"nodes keep running. Its log: {log}", flush=True)
        if self.policy == "on-failure" and node.restarts < self.restart_max:
            node.restart_at = now + RESTART_DELAY_S
        else:
            node.restart_at = None
            print(f"  restart it: node.py node restart --cluster {self.layout.directory} --node {i}", flush=True)

    def _check_start(self, i: int, node: NodeState, now: float) -> bool:
        try:
            ready = self.processes.ready(i)
        except RuntimeError as exc:
            print(f"node{i} failed to start: {exc}", flush=True)
            node.state = "exited"
            return True
        if ready:
            node.state = "up"
            print(f"node{i} up again at {self.layout.rpc_url(i)}", flush=True)
            return True
        if now - node.started_at > self.health_timeout_s:
            print(f"node{i} did not answer /health in {self.health_timeout_s:.0f} s; stopping it", flush=True)
            self.processes.stop_node(i)
            node.state = "exited"
            return True
        return False

    def _start(self, i: int, node: NodeState) -> None:
        node.restart_at = None
        node.started_at = time.monotonic()
        node.state = "starting"
        self.processes.start_node(i)

    def _serve(self, request: Path) -> None:
        """Carry out one `node.py node ACTION` request and answer it in node{i}.done."""
        try:
            i = int(request.name.removeprefix("node").removesuffix(".request"))
            action = request.read_text().strip()
        except (OSError, ValueError):
            request.unlink(missing_ok=True)
            return
        request.unlink(missing_ok=True)
        node = self.nodes.get(i)
        if node is None or action not in ACTIONS:
            self._answer(i, False, f"no node{i} in this cluster" if node is None else f"unknown action {action!r}")
            return
        process = self.processes.processes[i]
        running = process.poll() is None
        if action == "restart":
            if running:
                self.processes.stop_node(i)
            node.restarts = 0
            self._start(i, node)
            print(f"node{i}: restart requested; starting it", flush=True)
            self._answer(i, True, f"node{i} restarting", waiting=True)
            return
        if not running:
            node.state = "stopped" if action == "stop" else "killed"
            node.restart_at = None
            self._answer(i, True, f"node{i} was not running")
            return
        self.processes.stop_node(i, signal.SIGTERM if action == "stop" else signal.SIGKILL)
        node.state = "stopped" if action == "stop" else "killed"
        node.restart_at = None  # by request: the restart policy leaves it down
        print(f"node{i} {node.state} by request (pid {process.pid}, {describe_exit(process.returncode)}); restart it: "
              f"node.py node restart --cluster {self.layout.directory} --node {i}", flush=True)
        self._answer(i, True, f"node{i} {node.state} ({describe_exit(process.returncode)})")

    def _answer(self, i: int, ok: bool, message: str, waiting: bool = False) -> None:
        self._manifest()  # the states first: the asking verb reads them once answered
        done = self.control / f"node{i}.done"
        partial = done.with_name(done.name + ".partial")
        partial.write_text(json.dumps({"ok": ok, "message": message, "waiting": waiting}))
        partial.replace(done)


# node -------------------------------------------------------------------------------------
def supervisor_pid(directory: Path) -> int | None:
    """The pid of the live `node.py cluster` process of this directory, if any."""
    try:
        pid = json.loads((directory / "cluster.json").read_text()).get("supervisor")
    except (OSError, ValueError):
        return None
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def cmd_node(args: argparse.Namespace) -> int:
    directory: Path = args.cluster
    if not (directory / "genesis.toml").exists():
        raise UserError(f"--cluster {directory}: no cluster there (no genesis.toml)")
    layout = discover(directory)
    if not 0 <= args.node < layout.nodes:
        raise UserError(f"--node {args.node}: {directory} has nodes 0..{layout.nodes - 1}")
    if supervisor_pid(directory) is None:
        raise UserError(f"no `node.py cluster` runs {directory}; start it with `node.py cluster --dir {directory}`",
                        EXIT_FAILED)
    control = directory / CONTROL_DIR
    done = control / f"node{args.node}.done"
    done.unlink(missing_ok=True)
    request = control / f"node{args.node}.request"
    partial = request.with_name(request.name + ".partial")
    partial.write_text(args.action + "\n")
    partial.replace(request)
    answer = _wait_answer(done, args.timeout)
    if answer.get("waiting"):
        print(answer["message"], "...", flush=True)
        return _wait_up(directory, args.node, args.timeout)
    print(answer["message"])
    return 0 if answer["ok"] else EXIT_FAILED


def _wait_answer(done: Path, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done.exists():
            answer: dict[str, Any] = json.loads(done.read_text())
            done.unlink(missing_ok=True)
            return answer
        time.sleep(TICK_S)
    raise UserError(f"the supervisor did not answer in {timeout_s:.0f} s (see its output)", EXIT_FAILED)


def _wait_up(directory: Path, i: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = json.loads((directory / "cluster.json").read_text())["nodes"][i].get("state")
        except (OSError, ValueError, KeyError, IndexError):
            state = None
        if state == "up":
            print(f"node{i} up")
            return 0
        if state == "exited":
            raise UserError(f"node{i} failed to start; see {directory / f'node{i}' / 'node.log'}", EXIT_FAILED)
        time.sleep(TICK_S)
    raise UserError(f"node{i} not up after {timeout_s:.0f} s; see {directory / f'node{i}' / 'node.log'}", EXIT_FAILED)
