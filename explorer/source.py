"""Where the explorer reads the chain: JSON-RPC, either of the node it runs in (the
server's own dispatcher, same checks and budgets, no socket: `LocalSource`) or of a node it
is pointed at (`node.py explorer --rpc URL`: the SDK's failover `RpcClient`). Both answer
in the same JSON and fail with the SDK's errors (`RpcCallError`, `NodeUnavailable`), so the
indexer and the pages have one code path."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from client import RpcCallError
from rpc import RpcError

if TYPE_CHECKING:
    from rpc.server import RpcServer


class ChainSource(Protocol):
    async def call(self, method: str, *params: Any) -> Any: ...


class LocalSource:
    def __init__(self, server: RpcServer) -> None:
        self.server = server

    async def call(self, method: str, *params: Any) -> Any:
        try:
            return await self.server.local_call(method, *params)
        except RpcError as exc:
            raise RpcCallError(exc.code, exc.message, exc.data) from exc
