"""Errors the SDK raises."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client.receipts import Receipt


class ClientError(Exception):
    """Base class of SDK errors."""


class RpcCallError(ClientError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}" + (f" ({data})" if data else ""))
        self.code = code
        self.message = message
        self.data = data

    @property
    def reason(self) -> str | None:
        return self.data.get("reason") if isinstance(self.data, dict) else None


class NodeUnavailable(ClientError):
    """No node of the list answered. `connect_failed`: no TCP connection was made to any of
    them, so none received the request (a transaction sent so was surely not submitted)."""

    def __init__(self, message: str, connect_failed: bool = False) -> None:
        super().__init__(message)
        self.connect_failed = connect_failed


class BadReply(ClientError):
    """A reply that does not have the shape its method promises (a receipt without its
    fields, hex that is not hex)."""


class ReplyTooLarge(ClientError):
    """A reply over the client's reply_bytes_max (not read whole)."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class TransactionFailed(ClientError):
    """A final receipt with status 0."""

    def __init__(self, receipt: Receipt) -> None:
        super().__init__(f"transaction {receipt.tx} failed: {receipt.error}")
        self.tx_hash = receipt.tx
        self.receipt = receipt


class ProofMismatch(ClientError):
    """A proof did not verify against the header."""


class BadCall(ClientError):
    """A contract call that does not match the contract's declared signature (not sent)."""


class UnknownContract(ClientError):
    """No contract has this name on the node."""
