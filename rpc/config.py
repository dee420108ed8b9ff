"""Configuration of the RPC listeners ([rpc] of the node's TOML; runtime/config.py reads it
with the rest of the node's configuration), beside the code it configures, as p2p/config.py
and consensus/config.py are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

LOG_LEVELS = ("debug", "info", "warning", "error")  # [node] log_level, admin_setLogLevel
PORT_MAX = 65535
# Where a listener binds unless the config names an address: reachable from this host only,
# the safe default (node.py init --hosts / --topology writes each node's real address).
LOOPBACK = "127.0.0.1"


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
