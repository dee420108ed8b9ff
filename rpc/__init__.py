"""The node's API: JSON-RPC 2.0 over HTTP POST /, WebSocket subscriptions on /ws,
GET /health and GET /metrics, served by aiohttp.

Public face: `RpcServer` (rpc.server) over a `NodeView` (rpc.node: what it reads from the
node), configured by `RpcConfig` (rpc.config). Bytes travel as 0x-hex strings. RpcServer is
imported from rpc.server, not here: whoever reads the [rpc] settings (every CLI process,
through runtime/config.py) would otherwise load aiohttp and the server (~0.5 s of CPU).
"""

from rpc.config import RpcConfig
from rpc.errors import RpcConfigError, RpcError
from rpc.node import NodeView

__all__ = ["NodeView", "RpcConfig", "RpcConfigError", "RpcError"]
