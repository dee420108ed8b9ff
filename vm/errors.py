"""Errors of the contract engine. A `ContractError` is an expected failure: it reverts the
call that raised it and becomes the receipt's error reason, it never escapes a block. An
`InternalError` is a bug (Sawtooth's InternalError beside InvalidTransaction, style habit 2):
it escapes, and the block is not applied (except in an end-of-block hook: vm/engine.py)."""

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


class InternalError(Exception):
    """A contract raised something no contract rule raises (a bug in contract or engine
    code). Not a revert: a failed receipt would hide the bug, so a block that runs into it
    is not applied, and a proposer leaves the transaction out (chain/execution.py) and the
    node logs it with its traceback."""

    def __init__(self, contract: str, method: str, cause: BaseException) -> None:
        super().__init__(f"{contract}.{method} raised {type(cause).__name__}: {cause}")
        self.contract = contract
        self.method = method
