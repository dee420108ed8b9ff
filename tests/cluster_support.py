"""Multi-process cluster fixture for end-to-end tests: real node processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crypto import KeyPair
from runtime.cluster import (
    HEALTH_TIMEOUT_S,
    ClusterLayout,
    ClusterProcesses,
    account_keys,
    free_base_port,
    init_cluster,
)


@contextmanager
def running_cluster(directory: Path, nodes: int = 3, consensus: dict[str, Any] | None = None,
                    contracts: dict[str, Any] | None = None,
                    observers: int = 0,
                    health_timeout_s: float = HEALTH_TIMEOUT_S) -> Iterator[tuple[ClusterProcesses, list[KeyPair]]]:
    layout: ClusterLayout = init_cluster(directory, nodes, free_base_port(), consensus=consensus,
                                         contracts=contracts, observers=observers)
    processes = ClusterProcesses(layout)
    processes.start_all()
    try:
        processes.wait_healthy(health_timeout_s)
        accounts = account_keys(directory)
        yield processes, accounts
    finally:
        processes.stop_all()


def rpc_urls(processes: ClusterProcesses) -> list[str]:
    return [processes.layout.rpc_url(i) for i in range(processes.layout.nodes)]
