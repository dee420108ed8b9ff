"""bench.encryption's parts that run in seconds: the per-frame and handshake costs, and the
[p2p] settings a bench cluster's nodes are given (the cluster runs are the benchmark)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.encryption import _handshakes, frame_costs
from bench.harness import prepare_cluster
from p2p import P2PConfig
from runtime.config import NodeConfig


def test_frame_and_handshake_costs_are_measured() -> None:
    costs = frame_costs()
    assert set(costs) == {"300B", "64KiB"} and 0 < costs["300B"] < costs["64KiB"]
    assert asyncio.run(_handshakes(P2PConfig(encryption=False))) > 0


def test_bench_clusters_take_p2p_settings(tmp_path: Path) -> None:
    layout, _, _ = prepare_cluster(tmp_path / "c", 3, senders=1, p2p={"encryption": False})
    for i in range(3):
        config = NodeConfig.load(layout.node_dir(i) / "node.toml")
        assert config.p2p.encryption is False and config.p2p_port == layout.p2p_port(i)
        assert config.log_level == "warning"
