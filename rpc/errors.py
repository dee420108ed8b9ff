"""JSON-RPC error codes: the standard ones and gridchain's application codes."""

from __future__ import annotations

from typing import Any

from chain.errors import BlockPruned

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Application codes (documented in the README's RPC reference)
TX_REJECTED = -32000  # mempool refused the transaction; data.reason names why
NOT_FOUND = -32001  # unknown block, transaction or receipt
CONTRACT_ERROR = -32002  # a contract view failed; data.reason
UNAUTHORIZED = -32003  # no token, a bad one, or one not permitting the method; data.reason (rpc/auth.py)
BLOCK_PRUNED = -32004  # the block is below this node's base height; data.height, data.baseHeight
LIMIT_EXCEEDED = -32005  # a named limit was hit; data.limit


class RpcConfigError(Exception):
    """The [rpc] settings name files the server cannot use (token secret, TLS certificate):
    the node does not start, and the CLI says so in one line."""


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"invalid params: {message}")


def pruned_error(exc: BlockPruned) -> RpcError:
    return RpcError(BLOCK_PRUNED, str(exc), {"reason": "pruned", "height": exc.height, "baseHeight": exc.base})
