"""Node configuration from TOML (tomllib), validated at load by the schema derived from the
dataclasses below and the ones they hold (chain/schema.py): every table and key is known,
typed, in range, and the limits that depend on each other agree. The same schema writes the
README's configuration reference: `python -m runtime.config --markdown`.

    [node]       NodeConfig's plain fields (name, data_dir, key_file, genesis, log_level, ...)
    [p2p]        host, port, peers = [{name, public_key, host, port}], + P2PConfig fields
    [rpc]        RpcConfig fields
    [consensus]  ConsensusConfig fields but t (t comes from genesis)
    [mempool]    MempoolLimits fields
    [sync]       mode ("blocks" or "snapshot": how a fresh node joins) + SyncConfig fields
    [snapshot]   SnapshotConfig fields (making, keeping and fetching snapshots, pruning)
    [relay]      RelayLimits fields (transaction relay between nodes)
"""

from __future__ import annotations

import dataclasses
import sys
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from chain.genesis import Genesis, genesis_tables
from chain.mempool import MempoolLimits
from chain.schema import SchemaError, Table, build, check_document, document, markdown
from consensus import ConsensusConfig, SyncConfig
from consensus.statesync import SnapshotConfig
from p2p import P2PConfig, P2PError
from rpc import RpcConfig
from rpc.config import LOG_LEVELS, LOOPBACK, PORT_MAX
from runtime.txrelay import TX_BATCH_MAX, RelayLimits

LOG_FORMATS = ("text", "json")
SYNC_MODES = ("blocks", "snapshot")
# Room in one p2p frame around its payload: message fields, a block's header and commit
# certificate, rlp and msgpack length prefixes (a few KiB in practice).
FRAME_ENVELOPE_BYTES = 64 * 1024


class ConfigError(Exception):
    """The node configuration is missing, malformed or names an unknown setting."""


@dataclass(frozen=True)
class PeerAddress:
    name: str
    public_key: bytes = field(metadata={"doc": "the peer's Ed25519 node key, 32 bytes hex"})
    host: str
    port: int = field(metadata={"max": PORT_MAX})


@dataclass(frozen=True)
class ExplorerConfig:
    enabled: bool = True  # GET / on the RPC listener serves the explorer (explorer/)
    index_file: Path = Path("explorer.sqlite")  # its SQLite index, relative to data_dir; rebuilt from the chain
    # another node's RPC URL (http://host:port): the proof page checks proofs against headers it serves
    header_rpc: str = ""


@dataclass(frozen=True)
class NodeConfig:
    name: str  # the node's name in logs and metrics
    data_dir: Path = Path("data")  # LMDB store, relative to the file
    key_file: Path = Path("node.key")  # Ed25519 node key, encrypted (docs/security.md), relative to the file
    # file holding the key's passphrase (owner-only), relative to this file; unset: $GRIDCHAIN_PASSPHRASE_FILE,
    # $GRIDCHAIN_PASSPHRASE, or a prompt on a terminal
    key_passphrase_file: Path | None = None
    genesis: Path = Path("genesis.toml")  # relative to the file
    # one line per event: final blocks, view changes, peers, rejected input
    log_level: str = field(default="info", metadata={"choices": LOG_LEVELS})
    # text: one readable line per event; json: one JSON object per line (ts, level, logger, msg, reason)
    log_format: str = field(default="text", metadata={"choices": LOG_FORMATS})
    p2p_host: str = field(default=LOOPBACK, metadata={"table": "p2p", "key": "host",
                                                         "doc": "peers connect here"})
    p2p_port: int = field(default=26656, metadata={"table": "p2p", "key": "port", "max": PORT_MAX})
    # [[p2p.peers]]: the nodes this one dials and accepts
    peers: tuple[PeerAddress, ...] = field(default=(), metadata={"table": "p2p", "schema": PeerAddress})
    p2p: P2PConfig = field(default_factory=P2PConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)
    # ConsensusConfig fields but t (t comes from genesis)
    consensus: dict[str, Any] = field(default_factory=dict,
                                      metadata={"schema": ConsensusConfig, "exclude": ("t",)})
    mempool: MempoolLimits = field(default_factory=MempoolLimits)
    # How a node with a fresh store joins: "blocks" replays the chain from genesis by block sync;
    # "snapshot" restores the newest state snapshot its peers offer (checked against a final
    # block's state root), then follows by block sync (node.py start --sync overrides it)
    sync_mode: str = field(default="blocks", metadata={"table": "sync", "key": "mode", "choices": SYNC_MODES})
    sync: SyncConfig = field(default_factory=SyncConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    relay: RelayLimits = field(default_factory=RelayLimits)  # transactions between nodes (runtime/txrelay.py)
    lmdb_map_bytes: int = field(default=8 << 30, metadata={"min": 1 << 20})  # LMDB map size (sparse)
    # a full map doubles up to this while the disk keeps disk_free_bytes_min free; past either, consensus pauses
    lmdb_map_bytes_max: int = field(default=64 << 30, metadata={"min": 1 << 20})
    disk_free_bytes_min: int = field(default=64 << 20, metadata={"min": 0})  # disk kept free when the map grows
    # while paused for space (RPC reads go on, /health says why), retry the write this often
    storage_retry_ms: int = field(default=1_000, metadata={"min": 1})
    status_interval_ms: int = field(default=500, metadata={"min": 1})  # final head announced to peers (block sync)
    # a proposer stops adding transactions to a block after this much CPU time of its loop
    # (every replica re-executes it); CPU, not wall time, so a starved machine still builds full blocks
    block_build_ms_max: int = field(default=300, metadata={"min": 1})
    # Test-only: added to this node's wall clock (block time, the clock_drift_ms_max check),
    # for the clock-skew fault scenarios; 0 on a real node, which keeps its clock by NTP.
    clock_offset_ms: int = field(default=0, metadata={"min": -(1 << 62), "max": 1 << 62})
    source: Path | None = field(default=None, compare=False, metadata={"toml": False})

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(raw, base=path.parent, source=path)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base: Path, source: Path | None = None) -> NodeConfig:
        where = str(source or "node configuration")
        try:
            return cls._from_tables(check_document(raw, node_tables(), where), base, source)
        except (SchemaError, P2PError) as exc:
            raise ConfigError(str(exc)) from exc

    @classmethod
    def _from_tables(cls, tables: dict[str, dict[str, Any]], base: Path, source: Path | None) -> NodeConfig:
        where = str(source or "node configuration")
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = dict(tables["node"])
        for f in fields(cls):
            if "table" in f.metadata and f.name in tables[f.metadata["table"]]:  # [p2p] host, port, peers
                values[f.name] = tables[f.metadata["table"]].pop(f.name)
        for name in ("data_dir", "key_file", "genesis"):
            values[name] = base / values.get(name, getattr(cls, name))
        if "key_passphrase_file" in values:
            values["key_passphrase_file"] = base / values["key_passphrase_file"]
        values["peers"] = tuple(PeerAddress(**peer) for peer in values.get("peers", ()))
        # validated now (t = 1 stands in for the genesis's t), not when consensus starts
        build(ConsensusConfig, {"t": 1, **tables["consensus"]}, f"{where}: [consensus]")
        values["consensus"] = tables["consensus"]
        for f in fields(cls):
            if f.name not in values and dataclasses.is_dataclass(hints[f.name]):
                values[f.name] = build(hints[f.name], tables[f.name], f"{where}: [{f.name}]")
        values["rpc"] = values["rpc"].resolved(base)
        return cls(**values, source=source)


def node_tables() -> list[Table]:
    return document(NodeConfig, "node")


def check_limits(config: NodeConfig, genesis: Genesis) -> None:
    """Relations between limits set in different places (node.toml, genesis.toml, code),
    which each dataclass alone cannot check."""
    frame = config.p2p.frame_bytes_max
    where = config.source or "node configuration"
    burst = config.consensus.get("decode_burst_bytes", ConsensusConfig.decode_burst_bytes)
    rules = [
        (genesis.limits.block_bytes_max + FRAME_ENVELOPE_BYTES <= burst,
         f"[consensus] decode_burst_bytes = {burst} must hold the largest block (genesis [limits] "
         f"block_bytes_max = {genesis.limits.block_bytes_max}) plus {FRAME_ENVELOPE_BYTES} bytes of envelope"),
        (config.sync.response_bytes_max + FRAME_ENVELOPE_BYTES <= burst,
         f"[consensus] decode_burst_bytes = {burst} must hold a block sync answer ([sync] response_bytes_max = "
         f"{config.sync.response_bytes_max}) plus {FRAME_ENVELOPE_BYTES} bytes of envelope"),
        (genesis.limits.block_bytes_max + FRAME_ENVELOPE_BYTES <= frame,
         f"a block's largest size (genesis [limits] block_bytes_max = {genesis.limits.block_bytes_max}) plus "
         f"{FRAME_ENVELOPE_BYTES} bytes of envelope must fit in one p2p frame ([p2p] frame_bytes_max = {frame})"),
        (config.sync.response_bytes_max + FRAME_ENVELOPE_BYTES <= frame,
         f"[sync] response_bytes_max = {config.sync.response_bytes_max} plus {FRAME_ENVELOPE_BYTES} bytes of "
         f"envelope must fit in one p2p frame ([p2p] frame_bytes_max = {frame})"),
        (genesis.limits.tx_bytes_max * TX_BATCH_MAX + FRAME_ENVELOPE_BYTES <= frame,
         f"a relay batch of {TX_BATCH_MAX} transactions of genesis [limits] tx_bytes_max = "
         f"{genesis.limits.tx_bytes_max} must fit in one p2p frame ([p2p] frame_bytes_max = {frame})"),
        (genesis.limits.tx_bytes_max * 2 + FRAME_ENVELOPE_BYTES <= config.rpc.body_bytes_max,
         f"a transaction (genesis [limits] tx_bytes_max = {genesis.limits.tx_bytes_max}, hex-encoded) must fit "
         f"in one RPC body ([rpc] body_bytes_max = {config.rpc.body_bytes_max})"),
        (config.snapshot.part_bytes_max + FRAME_ENVELOPE_BYTES <= frame,
         f"[snapshot] part_bytes_max = {config.snapshot.part_bytes_max} plus {FRAME_ENVELOPE_BYTES} bytes of "
         f"envelope must fit in one p2p frame ([p2p] frame_bytes_max = {frame})"),
        (genesis.limits.block_bytes_max + FRAME_ENVELOPE_BYTES <= config.snapshot.part_bytes_max,
         f"a snapshot's part 0 is its block: [snapshot] part_bytes_max = {config.snapshot.part_bytes_max} must "
         f"hold genesis [limits] block_bytes_max = {genesis.limits.block_bytes_max} plus {FRAME_ENVELOPE_BYTES}"),
    ]
    for holds, problem in rules:
        if not holds:
            raise ConfigError(f"{where}: {problem}")


def main(argv: list[str]) -> int:
    """`python -m runtime.config --markdown`: the README's configuration reference."""
    if argv != ["--markdown"]:
        print("usage: python -m runtime.config --markdown", file=sys.stderr)
        return 2
    print(markdown(node_tables(), "node.toml") + "\n" + markdown(genesis_tables(), "genesis.toml"), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
