"""Node configuration from TOML (tomllib). Every limit has a name ending in its unit and a
default documented in docs/configuration.md; a file only needs what differs.

    [node]       name, data_dir, key_file, genesis, log_level, lmdb_map_bytes, status_interval_ms,
                 rebroadcast_after_ms, block_build_ms_max
    [p2p]        host, port, peers = [{name, public_key, host, port}], + P2PConfig fields
    [rpc]        host, port, body_bytes_max, batch_max, websockets_max, receipt_wait_ms_max, ...
    [consensus]  ConsensusConfig fields but t (delta_ms, batch_timeout_ms, ...)
    [mempool]    MempoolLimits fields
    [sync]       SyncConfig fields
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from chain.mempool import MempoolLimits
from consensus import ConsensusConfig, SyncConfig
from p2p import P2PConfig


class ConfigError(Exception):
    """The node configuration is missing, malformed or names an unknown setting."""


@dataclass(frozen=True)
class PeerAddress:
    name: str
    public_key: bytes
    host: str
    port: int


@dataclass(frozen=True)
class RpcConfig:
    host: str = "127.0.0.1"
    port: int = 8545
    body_bytes_max: int = 1 << 20  # larger POST bodies get HTTP 413
    batch_max: int = 100  # JSON-RPC batch entries
    websockets_max: int = 64  # open /ws connections
    subscriptions_per_socket_max: int = 16
    ws_send_queue_max: int = 1_000  # notifications waiting per socket before it is closed
    receipt_wait_ms_max: int = 30_000  # longest tx_receipt wait
    receipt_waiters_max: int = 10_000  # concurrent tx_receipt waits
    submit_queue_max: int = 10_000  # transactions waiting for the consensus loop
    blocks_range_max: int = 256
    # Open HTTP/WebSocket connections, in all and from one client address; over either, a
    # new one gets HTTP 503 (-32005) at once. Capped again at start by RLIMIT_NOFILE minus
    # descriptors_reserved, so RPC clients can never take the descriptors peers need.
    connections_max: int = 1_024
    connections_per_client_max: int = 64
    descriptors_reserved: int = 256  # kept for p2p (peers, handshakes), LMDB and logs
    # A request's headers must be complete this long after its first byte (slowloris), and
    # its body read within as long again; a connection with no request is closed after idle.
    header_timeout_ms: int = 5_000
    idle_timeout_ms: int = 30_000
    # JSON bytes of one reply and of a whole batch: a full block (block_bytes_max, 2 MiB) is
    # ~4 MiB of hex, so one fits; 100 of them (226 MiB) stalled consensus for 15 s.
    response_bytes_max: int = 8 << 20
    batch_response_bytes_max: int = 16 << 20
    view_ms_max: int = 1_000  # wall-clock bound of one contract_call, besides its gas


@dataclass(frozen=True)
class NodeConfig:
    name: str
    data_dir: Path
    key_file: Path
    genesis: Path
    log_level: str
    p2p_host: str
    p2p_port: int
    peers: tuple[PeerAddress, ...]
    p2p: P2PConfig
    rpc: RpcConfig
    consensus: dict[str, Any]  # ConsensusConfig fields but t (t comes from genesis)
    mempool: MempoolLimits
    sync: SyncConfig
    lmdb_map_bytes: int = 8 << 30
    status_interval_ms: int = 500  # how often the final head is announced to peers (block sync)
    rebroadcast_after_ms: int = 3_000  # pending this long here: announce it to the peers again
    block_build_ms_max: int = 300  # a proposer stops adding transactions after this long
    source: Path | None = field(default=None, compare=False)

    @classmethod
    def load(cls, path: Path) -> NodeConfig:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(raw, base=path.parent, source=path)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base: Path, source: Path | None = None) -> NodeConfig:
        node = raw.get("node", {})
        p2p = dict(raw.get("p2p", {}))
        try:
            peers = tuple(PeerAddress(p["name"], bytes.fromhex(p["public_key"]), p["host"], int(p["port"]))
                          for p in p2p.pop("peers", []))
            host = p2p.pop("host", "127.0.0.1")
            port = int(p2p.pop("port", 26656))
            return cls(
                name=node["name"],
                data_dir=base / node.get("data_dir", "data"),
                key_file=base / node.get("key_file", "node.key"),
                genesis=base / node.get("genesis", "genesis.toml"),
                log_level=node.get("log_level", "info"),
                lmdb_map_bytes=int(node.get("lmdb_map_bytes", 8 << 30)),
                status_interval_ms=int(node.get("status_interval_ms", 500)),
                rebroadcast_after_ms=int(node.get("rebroadcast_after_ms", 3_000)),
                block_build_ms_max=int(node.get("block_build_ms_max", 300)),
                p2p_host=host,
                p2p_port=port,
                peers=peers,
                p2p=_section(P2PConfig, p2p, "p2p"),
                rpc=_section(RpcConfig, raw.get("rpc", {}), "rpc"),
                consensus=_consensus_section(raw.get("consensus", {})),
                mempool=_section(MempoolLimits, raw.get("mempool", {}), "mempool"),
                sync=_section(SyncConfig, raw.get("sync", {}), "sync"),
                source=source,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed node configuration: {exc!r}") from exc


def _consensus_section(values: dict[str, Any]) -> dict[str, Any]:
    if "t" in values:
        raise ConfigError("[consensus] t comes from the genesis file, not the node configuration")
    known = {f.name for f in fields(ConsensusConfig)} - {"t"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"[consensus] has unknown settings {unknown}; known: {sorted(known)}")
    try:
        ConsensusConfig(t=1, **values)  # validate now, not when the node starts consensus
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[consensus]: {exc}") from exc
    return dict(values)


def _section(kind: type, values: dict[str, Any], name: str) -> Any:
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"[{name}] has unknown settings {unknown}; known: {sorted(known)}")
    return kind(**values)
