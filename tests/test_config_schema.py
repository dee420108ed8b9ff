"""node.toml and genesis.toml are validated by one schema derived from the config
dataclasses; every mistake is refused by name, and the README's reference is generated
from the same schema."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from chain.genesis import Genesis, GenesisError
from contracts import genesis_from_dict
from runtime.cluster import init_cluster
from runtime.config import ConfigError, NodeConfig, check_limits, genesis_tables, node_tables

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("schema") / "cluster"
    init_cluster(directory, 3, 30_000)
    return directory


def node_raw(cluster: Path) -> dict:
    return tomllib.loads((cluster / "node0" / "node.toml").read_text())


def load_node(cluster: Path, raw: dict) -> NodeConfig:
    return NodeConfig.from_dict(raw, base=cluster / "node0", source=Path("node.toml"))


def genesis_raw(cluster: Path) -> dict:
    return tomllib.loads((cluster / "genesis.toml").read_text())


def test_the_file_init_writes_loads_and_its_limits_agree(cluster: Path) -> None:
    config = load_node(cluster, node_raw(cluster))
    assert config.rpc.port == 30_000 and config.p2p_port == 30_100 and len(config.peers) == 2
    assert config.data_dir == cluster / "node0" / "data"
    check_limits(config, Genesis.load(config.genesis))


@pytest.mark.parametrize("edit, message", [
    (lambda raw: raw.__setitem__("rcp", raw.pop("rpc")), "node.toml: table [rcp]: unknown; known: [consensus]"),
    (lambda raw: raw["node"].__setitem__("log_levle", "info"), "node.toml: [node] log_levle: unknown setting"),
    (lambda raw: raw["rpc"].__setitem__("port", "19545x"), "node.toml: [rpc] port: '19545x' is not integer 0..65535"),
    (lambda raw: raw["rpc"].__setitem__("port", 70_000), "[rpc] port: 70000 is not integer 0..65535"),
    (lambda raw: raw["node"].__setitem__("log_level", "verbose"),
     '[node] log_level: \'verbose\' is not one of "debug", "info", "warning", "error"'),
    (lambda raw: raw["node"].__setitem__("log_format", "xml"), "[node] log_format: 'xml' is not one of"),
    (lambda raw: raw["node"].pop("name"), "missing [node] name"),
    (lambda raw: raw.__setitem__("consensus", {"t": 2}), "[consensus] t: is not set here"),
    (lambda raw: raw.__setitem__("consensus", {"delta_ms": 600}), "[consensus]: view_change_timeout_ms must exceed"),
    (lambda raw: raw["p2p"].__setitem__("frame_bytes_max", 0), "frame_bytes_max=0: must be a positive integer"),
    (lambda raw: raw["p2p"]["peers"][0].__setitem__("public_key", "zz"), "peers[0] public_key: must be a hex string"),
    (lambda raw: raw["p2p"]["peers"][1].pop("port"), "[p2p] peers[1]: missing port"),
    (lambda raw: raw.__setitem__("mempool", {"txs_max": -1}), "[mempool] txs_max: -1 is not integer >= 0"),
    (lambda raw: raw.__setitem__("sync", {"peers_max": True}), "[sync] peers_max: True is not integer"),
])
def test_node_config_mistakes_are_refused_by_name(cluster: Path, edit, message: str) -> None:
    raw = node_raw(cluster)
    edit(raw)
    with pytest.raises(ConfigError) as info:
        load_node(cluster, raw)
    assert message in str(info.value)


def test_limits_that_depend_on_each_other_are_checked(cluster: Path) -> None:
    genesis = Genesis.load(cluster / "genesis.toml")
    raw = node_raw(cluster)
    raw["p2p"]["frame_bytes_max"] = 1 << 20  # below a 2 MiB block
    with pytest.raises(ConfigError, match=r"block's largest size .* must fit in one p2p frame"):
        check_limits(load_node(cluster, raw), genesis)
    raw = node_raw(cluster)
    raw["sync"] = {"response_bytes_max": 4 << 20}  # the whole 4 MiB frame, no room for the envelope
    with pytest.raises(ConfigError, match=r"\[sync\] response_bytes_max = 4194304 .* must fit in one p2p frame"):
        check_limits(load_node(cluster, raw), genesis)
    raw = node_raw(cluster)
    raw.setdefault("consensus", {})["decode_burst_bytes"] = 1 << 20  # an honest 2 MiB block would never decode
    with pytest.raises(ConfigError, match=r"decode_burst_bytes = 1048576 must hold the largest block"):
        check_limits(load_node(cluster, raw), genesis)


@pytest.mark.parametrize("edit, message", [
    (lambda raw: raw.__setitem__("chain_idd", 1), "genesis.toml: key chain_idd: unknown"),
    (lambda raw: raw.__setitem__("t", 0), "genesis.toml: t: 0 is not integer >= 1"),
    (lambda raw: raw.__setitem__("t", 2), "3 bookkeepers but t = 2"),
    (lambda raw: raw["limits"].__setitem__("block_bytes_maxx", 1), "[limits] block_bytes_maxx: unknown setting"),
    (lambda raw: raw["limits"].__setitem__("tx_bytes_max", 4 << 20), "tx_bytes_max must not exceed block_bytes_max"),
    (lambda raw: raw["bookkeepers"][0].__setitem__("public_key", "00"), "public_key is 1 bytes, not 32"),
    (lambda raw: raw["accounts"][0].__setitem__("address", "0x" + "11" * 20), "either public_key or address"),
    (lambda raw: raw["contracts"].__setitem__("tokn", {}), "[contracts.tokn]: unknown contract; known: credit"),
])
def test_genesis_mistakes_are_refused_by_name(cluster: Path, edit, message: str) -> None:
    raw = genesis_raw(cluster)
    edit(raw)
    with pytest.raises(GenesisError) as info:
        genesis_from_dict(raw, source="genesis.toml")
    assert message in str(info.value)


def test_contract_tables_go_through_the_contracts_own_checks(cluster: Path) -> None:
    raw = genesis_raw(cluster)
    raw["contracts"]["credit"]["alpha_percent"] = 100  # crashed the credit contract on a second rating
    with pytest.raises(GenesisError) as info:
        genesis_from_dict(raw, source="genesis.toml")
    assert "genesis.toml: contract parameter refused: [contracts.credit] alpha_percent = 100" in str(info.value)


def test_a_setting_added_to_a_config_dataclass_is_in_the_schema() -> None:
    """The schema is the dataclasses: every field of every section appears, nothing else."""
    from dataclasses import fields

    from chain.mempool import MempoolLimits
    from consensus import ConsensusConfig, SyncConfig
    from consensus.statesync import SnapshotConfig
    from p2p import P2PConfig
    from runtime.config import RpcConfig

    tables = {t.name: {s.key for s in t.settings} for t in node_tables()}
    assert {f.name for f in fields(RpcConfig)} == tables["rpc"]
    assert {f.name for f in fields(P2PConfig)} | {"host", "port", "peers"} == tables["p2p"]
    assert {f.name for f in fields(ConsensusConfig)} - {"t"} == tables["consensus"]
    assert {f.name for f in fields(MempoolLimits)} == tables["mempool"]
    assert {f.name for f in fields(SyncConfig)} | {"mode"} == tables["sync"]
    assert {f.name for f in fields(SnapshotConfig)} == tables["snapshot"]
    assert "log_format" in tables["node"] and "limits" in {t.name for t in genesis_tables()}


def test_the_readme_reference_is_the_generated_one() -> None:
    generated = subprocess.run([sys.executable, "-m", "runtime.config", "--markdown"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- config-reference: begin.*?-->\n(.*?)<!-- config-reference: end -->", readme, re.S)
    assert found, "README.md lacks the config-reference markers"
    assert found.group(1) == generated, "README is stale: paste `python -m runtime.config --markdown` in"
