"""The node's API: JSON-RPC 2.0 over HTTP POST /, WebSocket subscriptions on /ws,
GET /health and GET /metrics, served by aiohttp.

Public face: `RpcServer` (rpc.server). Bytes travel as 0x-hex strings.
"""
