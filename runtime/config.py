"""Node configuration from TOML (tomllib), validated at load by the schema derived from the
dataclasses below and the ones they hold (chain/schema.py): every table and key is known,
typed, in range, and the limits that depend on each other agree. The same schema writes the
README's configuration reference: `python -m runtime.config --markdown`.

    [node]       NodeConfig's plain fields (name, data_dir, key_file, genesis, log_level, ...)
    [p2p]        host, port, peers = [{name, public_key, host, port}], + P2PConfig fields
    [rpc]        RpcConfig fields
    [consensus]  ConsensusConfig fields but t (t comes from genesis)
    [mempool]    MempoolLimits fields
    [sync]       SyncConfig fields
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
from p2p import P2PConfig, P2PError
from runtime.txrelay import TX_BATCH_MAX, RelayLimits

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
PORT_MAX = 65535
# Where a listener binds unless the config names an address: reachable from this host only,
# the safe default (node.py init --hosts / --topology writes each node's real address).
LOOPBACK = "127.0.0.1"
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
class RpcConfig:
    # public JSON-RPC, /ws, /health and /metrics listen here; `node.py init --hosts` writes the node's address
    host: str = LOOPBACK
    port: int = field(default=8545, metadata={"max": PORT_MAX})
    body_bytes_max: int = field(default=1 << 20, metadata={"min": 1})  # larger POST bodies get HTTP 413
    batch_max: int = field(default=100, metadata={"min": 1})  # JSON-RPC batch entries
    websockets_max: int = 64  # open /ws connections
    subscriptions_per_socket_max: int = 16  # subscriptions of one /ws connection
    # notifications waiting per socket before it is closed
    ws_send_queue_max: int = field(default=1_000, metadata={"min": 1})
    receipt_wait_ms_max: int = 30_000  # longest tx_receipt wait
    receipt_waiters_max: int = 10_000  # concurrent tx_receipt waits
    submit_queue_max: int = field(default=10_000, metadata={"min": 1})  # transactions waiting for the loop
    blocks_range_max: int = field(default=256, metadata={"min": 1})  # blocks per range request
    # Open HTTP/WebSocket connections; over it a new one gets HTTP 503 (-32005) at once.
    # Lowered at start to RLIMIT_NOFILE (soft raised to hard) minus descriptors_reserved,
    # so RPC clients can never take the descriptors peers need.
    connections_max: int = field(default=1_024, metadata={"min": 1})
    # open connections from one client address (HTTP 503, -32005 above it)
    connections_per_client_max: int = field(default=64, metadata={"min": 1})
    descriptors_reserved: int = 256  # never taken by RPC: p2p peers and handshakes, LMDB, logs
    # a request's headers must be complete this long after its first byte (slowloris); its body gets as long again
    header_timeout_ms: int = field(default=5_000, metadata={"min": 1})
    idle_timeout_ms: int = field(default=30_000, metadata={"min": 1})  # with no request this long: closed
    # JSON of one reply: a full block (block_bytes_max, 2 MiB) is ~4 MiB of hex, so one fits (-32005 above)
    response_bytes_max: int = field(default=8 << 20, metadata={"min": 1})
    # JSON of all replies of one batch: 100 full blocks (226 MiB) once stalled consensus for 15 s (-32005 above)
    batch_response_bytes_max: int = field(default=16 << 20, metadata={"min": 1})
    # JSON of every reply being built at once, over all connections (-32005 above): memory stays bounded
    replies_bytes_max: int = field(default=64 << 20, metadata={"min": 1})
    view_ms_max: int = 1_000  # wall-clock bound of one contract_call, besides its gas
    # Operator listener: every method, the operator ones (admin_*) included, each call only with
    # a bearer token permitting it (rpc/auth.py). Off the public listener, on localhost by default.
    operator_host: str = LOOPBACK
    operator_port: int = field(default=8551, metadata={"max": PORT_MAX})  # the operator listener's port
    # open operator connections, apart from connections_max: public clients cannot lock operators out
    operator_connections_max: int = field(default=16, metadata={"min": 1})
    # HMAC-SHA256 key of the bearer tokens (JWT HS256), hex, relative to the file; created 0600 at first start
    jwt_secret_file: Path = Path("rpc.secret")
    public_auth: bool = False  # the public listener also wants a token, checked per method
    # HTTPS on both listeners when both are set (PEM files, relative to the file)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None  # the private key of tls_cert_file (PEM, mode 0600)
    # browser origins allowed on the public listener ("*" for any); none: no CORS headers, browsers refuse
    cors_origins: tuple[str, ...] = ()
    # JSON-RPC calls per second from one client address on the public listener (-32005, HTTP 429 above)
    client_calls_per_s_max: int = field(default=500, metadata={"min": 1})
    client_calls_burst_max: int = field(default=2_000, metadata={"min": 1})  # calls one address may send at once
    # never rate-limited: the node host's own tools (a reverse proxy here would make every client one address)
    rate_exempt_hosts: tuple[str, ...] = (LOOPBACK, "::1")

    def __post_init__(self) -> None:
        if self.client_calls_burst_max < self.batch_max:
            raise ValueError("client_calls_burst_max must be at least batch_max (a full batch must be able to pass)")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")

    def resolved(self, base: Path) -> RpcConfig:
        """The files relative to the config file's directory."""
        return dataclasses.replace(
            self, jwt_secret_file=base / self.jwt_secret_file,
            tls_cert_file=base / self.tls_cert_file if self.tls_cert_file else None,
            tls_key_file=base / self.tls_key_file if self.tls_key_file else None)


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
    key_file: Path = Path("node.key")  # Ed25519 node key (hex seed), relative to the file
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
    sync: SyncConfig = field(default_factory=SyncConfig)
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
    rules = [
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
