"""Real node processes for the cluster benchmarks: a fresh cluster in a directory (extra
genesis accounts, DSC devices, ledger limits), its processes, their CPU time, and small
RPC helpers that fail over across nodes. Every wait here is bounded."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crypto import KeyPair
from runtime.cluster import (
    ROOT,
    ClusterLayout,
    ClusterProcesses,
    account_keys,
    free_base_port,
    init_cluster,
    toml_value,
)

DSC_DEVICE_TYPE = "smart-meter"
DSC_REQUEST_DEPOSIT = 100  # the contract default when genesis sets none
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class BenchCluster:
    """A started cluster: its processes, layout, the funded sender keys and DSC devices."""

    processes: ClusterProcesses
    senders: list[KeyPair]
    devices: list[KeyPair] = field(default_factory=list)

    @property
    def dsc_deposit(self) -> int:
        return dsc_request_deposit(self.layout.directory)

    @property
    def layout(self) -> ClusterLayout:
        return self.processes.layout

    @property
    def urls(self) -> list[str]:
        return [self.layout.rpc_url(i) for i in range(self.layout.nodes)]

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.processes.values() if p.poll() is None]


def _append_genesis(directory: Path, lines: list[str]) -> None:
    genesis = directory / "genesis.toml"
    genesis.write_text(genesis.read_text() + "\n" + "\n".join(lines) + "\n")


def _set_limit(directory: Path, name: str, value: int) -> None:
    genesis = directory / "genesis.toml"
    text, count = re.subn(rf"^{name} = \d+$", f"{name} = {value}", genesis.read_text(), flags=re.M)
    assert count == 1, f"genesis has no [limits] {name}"
    genesis.write_text(text)


def prepare_cluster(directory: Path, nodes: int, *, senders: int, extra_accounts: int = 0, dsc_devices: int = 0,
                    consensus: dict[str, Any] | None = None, limits: dict[str, int] | None = None,
                    log_level: str = "warning", p2p: dict[str, Any] | None = None,
                    ) -> tuple[ClusterLayout, list[KeyPair], list[KeyPair]]:
    """Write a cluster: `senders` funded accounts with key files, `extra_accounts` more funded
    accounts (state size only: keys are thrown away), and `dsc_devices` in-warranty devices of
    one vendor, each a funded account that may open a DSC request; `p2p` settings go into every
    node's [p2p] table (e.g. encryption = false, bench.encryption)."""
    layout = init_cluster(directory, nodes, free_base_port(), consensus=consensus, accounts=senders)
    keys = account_keys(directory)
    for name, value in (limits or {}).items():
        _set_limit(directory, name, value)
    lines: list[str] = []
    for _ in range(extra_accounts):
        lines += ["[[accounts]]", f'public_key = "{KeyPair.generate().public_key.hex()}"', "balance = 1000", ""]
    devices = [KeyPair.generate() for _ in range(dsc_devices)]
    if devices:
        lines += _dsc_lines(tomllib.loads((directory / "genesis.toml").read_text()), devices)
    if lines:
        _append_genesis(directory, lines)
    settings = "".join(f"{k} = {toml_value(v)}\n" for k, v in (p2p or {}).items())
    for i in range(nodes):
        config = layout.node_dir(i) / "node.toml"
        text = config.read_text().replace('log_level = "info"', f'log_level = "{log_level}"')
        config.write_text(text.replace("[p2p]\n", "[p2p]\n" + settings, 1))
    return layout, keys, devices


def _dsc_lines(genesis: dict[str, Any], devices: list[KeyPair]) -> list[str]:
    """Genesis lines for one vendor and its in-warranty `devices` (each a funded account),
    added to whatever [contracts.registry] / [contracts.dsc] tables the template has."""
    contracts = genesis.get("contracts", {})
    lines: list[str] = []
    vendor = KeyPair.generate()
    for device in devices:
        lines += ["[[accounts]]", f'public_key = "{device.public_key.hex()}"', "balance = 1000000000", ""]
    if "registry" not in contracts:
        lines += ["[contracts.registry]", ""]
    lines += ["[[contracts.registry.members]]", f'address = "{vendor.address.hex()}"', 'role = "vendor"', ""]
    for device in devices:
        lines += ["[[contracts.registry.devices]]", f'address = "{device.address.hex()}"',
                  f'vendor = "{vendor.address.hex()}"', f'device_type = "{DSC_DEVICE_TYPE}"',
                  "warranty_end_s = 4000000000", ""]
    if DSC_DEVICE_TYPE not in contracts.get("dsc", {}).get("prices", {}):
        lines += [f"[contracts.dsc.prices.{DSC_DEVICE_TYPE}]", "p_min = 10", "p_max = 200", ""]
    return lines


def dsc_request_deposit(directory: Path) -> int:
    genesis = tomllib.loads((directory / "genesis.toml").read_text())
    return int(genesis.get("contracts", {}).get("dsc", {}).get("request_deposit", DSC_REQUEST_DEPOSIT))


@contextmanager
def bench_cluster(nodes: int, *, senders: int, extra_accounts: int = 0, dsc_devices: int = 0,
                  consensus: dict[str, Any] | None = None, limits: dict[str, int] | None = None,
                  directory: Path | None = None, profile_dir: Path | None = None,
                  health_timeout_s: float = 120, log_level: str = "warning",
                  p2p: dict[str, Any] | None = None) -> Iterator[BenchCluster]:
    """Start a fresh cluster (in a temporary directory unless given); stop every process after."""
    with tempfile.TemporaryDirectory(prefix="gridchain-bench-") as scratch:
        where = directory or Path(scratch)
        layout, keys, devices = prepare_cluster(where, nodes, senders=senders, extra_accounts=extra_accounts,
                                                dsc_devices=dsc_devices, consensus=consensus, limits=limits,
                                                log_level=log_level, p2p=p2p)
        processes = ProfiledProcesses(layout, profile_dir) if profile_dir is not None else ClusterProcesses(layout)
        # SIGTERM's default action ends this process without running `finally`, leaving the
        # nodes running for ever: turn it into SystemExit so they are stopped below.
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            processes.start_all()
            processes.wait_healthy(health_timeout_s)
            yield BenchCluster(processes, keys, devices)
        finally:
            processes.stop_all()
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


PROFILE_DUMP_S = 120  # a profiled node's SIGTERM-to-exit allowance (it writes node{i}.prof)


class ProfiledProcesses(ClusterProcesses):
    """Node processes run under cProfile, timed by their own CPU clock (bench.cpuprofile);
    node{i}.prof is written when a node stops cleanly (SIGTERM), readable with `python -m pstats`."""

    def __init__(self, layout: ClusterLayout, profile_dir: Path) -> None:
        super().__init__(layout)
        self.profile_dir = profile_dir.resolve()
        self.profile_dir.mkdir(parents=True, exist_ok=True)

    def start_node(self, i: int) -> subprocess.Popen[bytes]:
        node_dir = self.layout.node_dir(i)
        log_file = open(node_dir / "node.log", "ab")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.cpuprofile", str(self.profile_dir / f"node{i}.prof"),
             str(ROOT / "node.py"), "start", "--config", str(node_dir / "node.toml")],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.processes[i] = process
        return process

    def stop_node(self, i: int, sig: int = signal.SIGTERM, timeout_s: float = PROFILE_DUMP_S) -> None:
        # Writing a long run's profile on a loaded box takes longer than a plain node's
        # stop: killed at the usual 10 s, an interrupted run left no profile at all.
        super().stop_node(i, sig, timeout_s)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux /proc), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a live process in MiB (Linux /proc), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def load_average() -> float:
    return os.getloadavg()[0]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "load_1m_at_start": round(load_average(), 2)}
