"""FaultCluster: a real local cluster (runtime/cluster.py) with a proxy on every p2p link
and the process-level faults: SIGKILL and restart, SIGSTOP/SIGCONT, restart with a
Byzantine mode, plus RSS readings from /proc.

`init_cluster` writes the usual layout; this module then rewrites each node's
`[[p2p.peers]]` ports to the proxy of that link (faults/proxy.py) and adds per-node
`[consensus]` settings and the test-only `[node] clock_offset_ms`, so nothing in runtime/
needs to know about the harness. Observers (indices `nodes` and up; `nodes` counts the
bookkeepers) follow by block sync; `start` leaves them stopped, a schedule starts them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiohttp

from client import ClientError, Receipt, Reply, RpcClient
from crypto import KeyPair
from faults.netns import Hosts
from faults.proxy import LinkProxies
from rpc.config import LOOPBACK
from runtime.cluster import (
    ROOT,
    ClusterLayout,
    ClusterProcesses,
    Endpoint,
    account_keys,
    free_base_port,
    init_cluster,
    node_key,
    toml_value,
)
from runtime.topology import OPERATOR_PORT, P2P_PORT, RPC_PORT

ACCOUNTS = 24
CALL_TIMEOUT_S = 5.0
BATCH_TIMEOUT_S = 20.0
CONNECTIONS_MAX = 64  # the harness's pooled connections, to all nodes together


class FaultCluster:
    def __init__(self, directory: Path, nodes: int, consensus: dict[str, Any] | None = None,
                 seed: int = 0, p2p: dict[str, Any] | None = None, rpc: dict[str, Any] | None = None,
                 unfunded: int = 0, extra_accounts: int = 0, observers: int = 0, hosts: Hosts | None = None) -> None:
        """`hosts`: each node in a network namespace of its own (faults/netns.py), with its
        own address and the deployment's standard ports; otherwise all on loopback."""
        self.directory = directory
        self.nodes = nodes
        self.t = (nodes - 1) // 2
        self.consensus = dict(consensus or {})
        self.p2p = dict(p2p or {})
        self.rpc = dict(rpc or {})
        self.hosts = hosts
        self.observers = list(range(nodes, nodes + observers))
        endpoints: tuple[Endpoint, ...] = ()
        if hosts is not None:
            assert hosts.count == nodes + observers
            endpoints = tuple(Endpoint(hosts.address(i), P2P_PORT, RPC_PORT, OPERATOR_PORT) for i in range(hosts.count))
            # the harness's clients are this cluster's operators, not outsiders to rate-limit
            self.rpc.setdefault("rate_exempt_hosts", [LOOPBACK, hosts.bridge_address])
        self.layout: ClusterLayout = init_cluster(directory, nodes, 0 if hosts else free_base_port(),
                                                  consensus=self.consensus, accounts=ACCOUNTS + extra_accounts,
                                                  observers=observers, endpoints=endpoints)
        # Accounts that exist with a zero balance, as a device registration makes them.
        self.unfunded = [KeyPair.generate() for _ in range(unfunded)]
        with open(directory / "genesis.toml", "a") as genesis:
            for key in self.unfunded:
                genesis.write(f'\n[[accounts]]\npublic_key = "{key.public_key.hex()}"\nbalance = 0\n')
        self.proxies = LinkProxies(self.layout.nodes, seed, hosts.bridge_address if hosts else LOOPBACK)
        self.processes = ClusterProcesses(self.layout, prefix=hosts.exec_prefix if hosts else None)
        self.paused: set[int] = set()
        self.byzantine: dict[int, str] = {}
        self.clock_offsets: dict[int, int] = {}  # node -> test-only clock_offset_ms
        self.accounts = account_keys(directory)
        self.node_keys = [node_key(self.layout, i) for i in range(self.layout.nodes)]
        self.client = RpcClient([self.layout.rpc_url(i) for i in range(self.layout.nodes)], failover=False,
                                timeout_s=CALL_TIMEOUT_S, connections_max=CONNECTIONS_MAX)

    # lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self.hosts is not None:
            self.hosts.up()
        self.proxies.start([self.layout.p2p_port(i) for i in range(self.layout.nodes)],
                           [self.layout.host(i) for i in range(self.layout.nodes)])
        for i in range(self.layout.nodes):
            self._write_config(i)
        for i in range(self.nodes):
            self.processes.start_node(i)

    def close(self) -> None:
        for i in list(self.paused):
            self.resume(i)
        try:
            self.processes.stop_all()
        finally:
            self.proxies.stop()
            if self.hosts is not None:
                self.hosts.close()

    async def aclose(self) -> None:
        await self.client.close()
        await asyncio.to_thread(self.close)

    def _write_config(self, i: int) -> None:
        path = self.layout.node_dir(i) / "node.toml"
        config = tomllib.loads(path.read_text())
        for peer in config["p2p"]["peers"]:
            peer["host"] = self.proxies.listen_host
            peer["port"] = self.proxies.port(i, int(peer["name"].removeprefix("node")))
        config["p2p"].update(self.p2p)
        config["rpc"].update(self.rpc)
        if i in self.clock_offsets:
            config["node"]["clock_offset_ms"] = self.clock_offsets[i]
        else:
            config["node"].pop("clock_offset_ms", None)
        consensus = {**self.consensus}
        if i in self.byzantine:
            consensus["byzantine"] = self.byzantine[i]
        if consensus:
            config["consensus"] = consensus
        else:
            config.pop("consensus", None)
        path.write_text(_dump_toml(config))

    # process faults -----------------------------------------------------------------------
    def pid(self, i: int) -> int | None:
        process = self.processes.processes.get(i)
        return process.pid if process is not None and process.poll() is None else None

    def is_running(self, i: int) -> bool:
        return self.pid(i) is not None

    def kill(self, i: int) -> None:
        self.resume(i)
        self.processes.stop_node(i, signal.SIGKILL)

    def terminate(self, i: int) -> None:
        self.resume(i)
        self.processes.stop_node(i, signal.SIGTERM)

    def pause(self, i: int) -> None:
        pid = self.pid(i)
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)
            self.paused.add(i)

    def resume(self, i: int) -> None:
        pid = self.pid(i)
        if i in self.paused and pid is not None:
            os.kill(pid, signal.SIGCONT)
        self.paused.discard(i)

    def start_node(self, i: int, byzantine: str | None = None) -> None:
        """(Re)start node i with a true clock; `byzantine` sets or clears its test-only fault
        mode (a clock skew is set before `start`: `clock_offsets`)."""
        assert not self.is_running(i), f"node{i} is running"
        if byzantine is None:
            self.byzantine.pop(i, None)
        else:
            self.byzantine[i] = byzantine
        self.clock_offsets.pop(i, None)
        self._write_config(i)
        self.processes.start_node(i)

    def wipe(self, i: int) -> None:
        """Delete stopped node i's store: it restarts empty and catches up by block sync
        (a Byzantine node replaced by a fresh honest one)."""
        assert not self.is_running(i), f"node{i} is running"
        shutil.rmtree(self.layout.node_dir(i) / "data", ignore_errors=True)

    def rss_bytes(self, i: int) -> int | None:
        pid = self.pid(i)
        if pid is None:
            return None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def verify_store(self, i: int) -> tuple[bool, str]:
        """`node.py verify` on node i's store (the node must be stopped)."""
        assert not self.is_running(i)
        result = subprocess.run([sys.executable, str(ROOT / "node.py"), "verify", "--data-dir",
                                 str(self.layout.node_dir(i) / "data")], capture_output=True, text=True,
                                cwd=ROOT, timeout=300)
        output = (result.stdout + result.stderr).strip().splitlines()
        return result.returncode == 0, output[-1] if output else ""

    # RPC ----------------------------------------------------------------------------------
    def url(self, i: int) -> str:
        return self.layout.rpc_url(i)

    async def call(self, i: int, method: str, *params: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        """One call to node i (no failover: the harness addresses each node itself)."""
        return await self.client.call(method, *params, node=i, timeout_s=timeout_s)

    async def receipt(self, i: int, tx_hash: str, wait_ms: int = 0,
                      timeout_s: float = CALL_TIMEOUT_S) -> Receipt | None:
        """Node i's final receipt of `tx_hash` (None while it has none; `wait_ms` waits)."""
        found = await self.call(i, "tx_receipt", tx_hash, wait_ms, timeout_s=timeout_s)
        return Receipt.from_json(found) if found is not None else None

    async def batch(self, i: int, calls: list[tuple[str, list[Any]]],
                    timeout_s: float = BATCH_TIMEOUT_S) -> list[Reply]:
        """A JSON-RPC batch to node i: one Reply per call, in call order."""
        return await self.client.batch(calls, node=i, timeout_s=timeout_s)

    async def metric(self, i: int, name: str, label: str = "", timeout_s: float = 5) -> float:
        """The sum of node i's Prometheus samples `name` (whose labels contain `label`)."""
        session = await self.client.session()
        async with session.get(self.url(i) + "/metrics", timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            text = await response.text()
        total = 0.0
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            if sample.split("{")[0] == name and label in sample:
                total += float(value)
        return total

    async def status(self, i: int, timeout_s: float = 2) -> dict[str, Any] | None:
        try:
            status: dict[str, Any] = await self.call(i, "chain_status", timeout_s=timeout_s)
        except ClientError:
            return None
        return status

    async def wait_serving(self, nodes: list[int] | None = None, timeout_s: float = 60) -> None:
        """Until every listed node answers chain_status (not necessarily in sync)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        for i in nodes if nodes is not None else range(self.nodes):
            while await self.status(i) is None:
                process = self.processes.processes.get(i)
                if process is not None and process.poll() is not None:
                    log = self.layout.node_dir(i) / "node.log"
                    raise RuntimeError(f"node{i} exited with {process.returncode}; see {log}:\n{_tail(log)}")
                if loop.time() > deadline:
                    raise TimeoutError(f"node{i} did not serve RPC in {timeout_s}s")
                await asyncio.sleep(0.1)

    async def wait_connected(self, timeout_s: float = 30) -> bool:
        """Until every running node sees every other running node as a peer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            up = [i for i in range(self.nodes) if self.is_running(i) and i not in self.paused]
            statuses = await asyncio.gather(*(self.status(i) for i in up))
            if all(s is not None and {f"node{k}" for k in up if k != i} <= set(s["peers"])
                   for i, s in zip(up, statuses, strict=True)):
                return True
            await asyncio.sleep(0.2)
        return False


def _tail(log: Path, lines: int = 20) -> str:
    """The last lines of a node's log (a CI run keeps the error, not the run's directory)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc.strerror})"


def _dump_toml(config: dict[str, Any]) -> str:
    """Node configs only: top-level tables of scalars, plus arrays of tables one level down."""
    lines: list[str] = []
    for name, table in config.items():
        lines.append(f"[{name}]")
        arrays = {k: v for k, v in table.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
        for key, value in table.items():
            if key not in arrays:
                lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
        for key, entries in arrays.items():
            for entry in entries:
                lines.append(f"[[{name}.{key}]]")
                lines += [f"{k} = {toml_value(v)}" for k, v in entry.items()]
                lines.append("")
    return "\n".join(lines)
