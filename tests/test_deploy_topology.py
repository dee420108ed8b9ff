"""`node.py init` on real hosts (issue 15): a topology from --hosts or a TOML file becomes
each host's node.toml with real addresses, and the timing presets are valid consensus
configurations."""

from __future__ import annotations

import contextlib
import io
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from consensus import TIMING_PRESETS, ConsensusConfig
from node import main as node_main
from runtime import topology
from runtime.cluster import discover
from runtime.config import NodeConfig

HOSTS = ["10.0.1.11", "10.0.2.12", "10.0.3.13"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def init(*args: str, cwd: Path) -> Result:
    """`node.py init ARGS` in this process (an interpreter per call costs seconds under load)."""
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = node_main(["init", *args])
            except SystemExit as exc:  # argparse refusals
                status = int(exc.code or 0)
    finally:
        os.chdir(previous)
    return Result(status, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("name", sorted(TIMING_PRESETS))
@pytest.mark.parametrize("t", [1, 2])
def test_every_timing_preset_is_a_valid_consensus_config(name: str, t: int) -> None:
    config = ConsensusConfig(t=t, **TIMING_PRESETS[name])
    assert config.view_change_timeout_ms > 2 * config.delta_ms


def test_hosts_become_each_nodes_addresses_with_the_wan_preset(tmp_path: Path) -> None:
    result = init("--hosts", ",".join(HOSTS), "--observer-hosts", "10.0.4.14", "--dir", "dep", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "timing wan" in result.stdout
    directory = tmp_path / "dep"
    keys = {}
    for i in range(4):
        config = NodeConfig.load(directory / f"node{i}" / "node.toml")
        keys[f"node{i}"] = config.peers
        host = (HOSTS + ["10.0.4.14"])[i]
        assert (config.p2p_host, config.p2p_port) == (host, topology.P2P_PORT)
        assert (config.rpc.host, config.rpc.port) == (host, topology.RPC_PORT)
        assert (config.rpc.operator_host, config.rpc.operator_port) == ("127.0.0.1", topology.OPERATOR_PORT)
        assert {(p.name, p.host) for p in config.peers} <= {(f"node{k}", h) for k, h in enumerate(HOSTS + ["10.0.4.14"])
                                                             if k != i}
        assert ConsensusConfig(t=1, **config.consensus).delta_ms == 1_250
        text = (directory / f"node{i}" / "node.toml").read_text()
        assert text.count("127.0.0.1") == 1, "only the operator listener is on loopback"
    assert len(keys["node3"]) == 3 and len(keys["node0"]) == 3  # the observer knows the bookkeepers only
    layout = discover(directory)
    assert [layout.rpc_url(i) for i in range(3)] == [f"http://{h}:8545" for h in HOSTS]


def test_a_topology_file_with_shared_hosts_nat_and_lan_timing(tmp_path: Path) -> None:
    (tmp_path / "topology.toml").write_text('''
timing = "lan"
[defaults]
rpc_port = 9545
[[bookkeepers]]
host = "bk0.example.net"
listen = "0.0.0.0"
[[bookkeepers]]
host = "10.0.0.2"
[[bookkeepers]]
host = "10.0.0.2"
p2p_port = 26657
rpc_port = 9546
operator_port = 8552
''')
    result = init("--topology", "topology.toml", "--dir", "dep", "--accounts", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    node0 = tomllib.loads((tmp_path / "dep" / "node0" / "node.toml").read_text())
    assert node0["p2p"]["host"] == "0.0.0.0" and node0["rpc"]["port"] == 9545
    assert node0["consensus"]["delta_ms"] == TIMING_PRESETS["lan"]["delta_ms"]
    node1 = tomllib.loads((tmp_path / "dep" / "node1" / "node.toml").read_text())
    assert {(p["host"], p["port"]) for p in node1["p2p"]["peers"]} == {("bk0.example.net", 26656),
                                                                        ("10.0.0.2", 26657)}
    genesis = tomllib.loads((tmp_path / "dep" / "genesis.toml").read_text())
    assert "accounts" not in genesis and len(genesis["bookkeepers"]) == 3


@pytest.mark.parametrize(("text", "problem"), [
    ('[[bookkeepers]]\nhost = "a"\n[[bookkeepers]]\nhost = "b"\n', "n = 2t+1"),
    ('[[bookkeepers]]\nhost = "0.0.0.0"\n', "bind address"),
    ('[[bookkeepers]]\nhost = "a"\n[[bookkeepers]]\nhost = "a"\n[[bookkeepers]]\nhost = "b"\n', "a:26656"),
    ('[[bookkeepers]]\nhost = "a"\nport = 1\n', "unknown keys port"),
    ('[[bookkeepers]]\nhost = "a"\np2p_port = 70000\n', "not a port"),
    ('[[bookkeepers]]\nhost = "a"\nlisten = "any"\n', "not an IP address"),
    ('timing = "moon"\n', "timing 'moon'"),
])
def test_a_bad_topology_is_refused_with_where_and_why(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "topology.toml"
    path.write_text(text)
    with pytest.raises(topology.TopologyError, match=problem.replace("+", r"\+").replace("(", r"\(")):
        topology.load(path)


def test_init_refuses_hosts_and_topology_together_in_one_line(tmp_path: Path) -> None:
    result = init("--hosts", "a,b,c", "--topology", "t.toml", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "not both" in result.stderr
    result = init("--hosts", "a,a,b", cwd=tmp_path)
    assert result.returncode == 2 and "two listeners on a:26656" in result.stderr
