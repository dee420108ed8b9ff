"""Expected rejections raised by consensus/ (STYLE.md habit 2).

A peer can send anything: a malformed or badly signed message is an `InvalidMessage`
carrying a short stable `reason`; the replica decides whether it is grounds for SUSPECT.
"""

from __future__ import annotations


class ConsensusError(Exception):
    """Base class of every expected consensus rejection."""


class InvalidMessage(ConsensusError):
    """A message that is malformed, badly signed or does not fit the protocol state."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
