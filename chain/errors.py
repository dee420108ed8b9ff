"""Expected rejections raised by the ledger (STYLE.md habit 2).

Each carries data a caller can show; a broken invariant is an `assert`, not one of these.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every expected ledger rejection."""


class DecodeError(LedgerError):
    """Bytes that do not decode to the declared type."""


class InvalidTransaction(LedgerError):
    """A transaction that may not enter a block. `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InvalidBlock(LedgerError):
    """A block that fails the state transition; names the field and both values."""

    def __init__(self, what: str, expected: object = None, got: object = None) -> None:
        text = what if expected is None else f"{what}: expected {_show(expected)}, got {_show(got)}"
        super().__init__(text)
        self.what = what
        self.expected = expected
        self.got = got


class InvalidCertificate(LedgerError):
    """A commit certificate that does not prove finality of its block."""


class UnknownBlock(LedgerError):
    """A block, transaction or receipt that the store does not hold."""


def _show(value: object) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else repr(value)
