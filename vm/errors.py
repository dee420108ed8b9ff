"""Errors of the contract engine. Every one of them reverts the call that raised it and
becomes the receipt's error reason; they never escape a block."""

from __future__ import annotations


class ContractError(Exception):
    """Base class: an expected failure of a contract call. `reason` is a stable code."""

    reason = "contract-error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)
        self.detail = detail


class Revert(ContractError):
    """A contract refused the call (its own rule)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(detail)


class OutOfGas(ContractError):
    reason = "out-of-gas"


class ViewTimeout(ContractError):
    """A read-only call ran longer than its wall-clock bound (RPC view_ms_max)."""

    reason = "view-timeout"


class UnknownMethod(ContractError):
    reason = "unknown-method"


class BadArguments(ContractError):
    reason = "bad-arguments"


class UnknownContract(ContractError):
    reason = "unknown-contract"


class ReadOnly(ContractError):
    reason = "read-only"


class InsufficientFunds(ContractError):
    reason = "insufficient-funds"
