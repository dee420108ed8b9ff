"""Multi-process cluster fixture for end-to-end tests: real node processes on loopback."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crypto.keys import KeyPair
from runtime.cluster import ClusterLayout, ClusterProcesses, init_cluster


def free_base_port(span: int = 110) -> int:
    """A base port whose RPC (base+i) and p2p (base+100+i) ports are free right now."""
    start = 20_000 + (os.getpid() * 37) % 30_000
    for base in range(start, start + 5_000, span + 7):
        if all(_free(base + offset) for offset in (*range(10), *range(100, 110))):
            return base
    raise RuntimeError("no free port range on loopback")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def running_cluster(directory: Path, nodes: int = 3, consensus: dict[str, Any] | None = None,
                    contracts: dict[str, Any] | None = None,
                    observers: int = 0) -> Iterator[tuple[ClusterProcesses, list[KeyPair]]]:
    layout: ClusterLayout = init_cluster(directory, nodes, free_base_port(), consensus=consensus,
                                         contracts=contracts, observers=observers)
    processes = ClusterProcesses(layout)
    processes.start_all()
    try:
        processes.wait_healthy()
        accounts = [KeyPair.load(Path(a["key_file"])) for a in json.loads((directory / "accounts.json").read_text())]
        yield processes, accounts
    finally:
        processes.stop_all()


def rpc_urls(processes: ClusterProcesses) -> list[str]:
    return [f"http://127.0.0.1:{processes.layout.rpc_port(i)}" for i in range(processes.layout.nodes)]
