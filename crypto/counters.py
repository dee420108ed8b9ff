"""Counts of the expensive operations of the paper's Table 4, per role or agent.

The paper prices each diagnosis flow in Paillier exponentiations (T_E), multiplications of
the signature algorithm (T_M) and bilinear pairings (T_P). crypto/bls.py and
crypto/paillier.py call `record` for each one they perform; the count goes to the
`OpCounter` made active with `attribute_to`, so a demo can wrap each agent's work and
report counts per role. Outside any `attribute_to` nothing is counted.

What one call counts (docs/crypto.md explains the differences from the paper's table):
- Paillier encryption: 1 T_E (r^N mod N^2, eq. 6, whether taken from the precomputed
  pool or computed inline; g^M with g = N + 1 is a multiplication, not an exponentiation).
- Paillier decryption: 1 T_E (C^lambda mod N^2, eq. 7, computed by phe with the CRT).
- BLS signing: 1 T_M (x * H(M), eq. 1).
- BLS verification: 2 T_P (the two pairings of eq. 2, evaluated as one multi-pairing).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum


class Op(Enum):
    PAILLIER_EXP = "T_E"
    SIG_MUL = "T_M"
    PAIRING = "T_P"


@dataclass(frozen=True)
class OpCounts:
    """A snapshot of one counter, in the paper's notation."""

    paillier_exp: int
    sig_mul: int
    pairing: int

    def as_dict(self) -> dict[str, int]:
        return {"T_E": self.paillier_exp, "T_M": self.sig_mul, "T_P": self.pairing}


class OpCounter:
    """Mutable tally of one role's operations."""

    def __init__(self) -> None:
        self._counts: dict[Op, int] = {op: 0 for op in Op}

    def add(self, op: Op, count: int = 1) -> None:
        self._counts[op] += count

    def snapshot(self) -> OpCounts:
        return OpCounts(
            paillier_exp=self._counts[Op.PAILLIER_EXP],
            sig_mul=self._counts[Op.SIG_MUL],
            pairing=self._counts[Op.PAIRING],
        )


_active: ContextVar[OpCounter | None] = ContextVar("gridchain_op_counter", default=None)


@contextmanager
def attribute_to(counter: OpCounter) -> Iterator[OpCounter]:
    """Count every operation performed inside the block (in this context) on `counter`."""
    token = _active.set(counter)
    try:
        yield counter
    finally:
        _active.reset(token)


def record(op: Op, count: int = 1) -> None:
    counter = _active.get()
    if counter is not None:
        counter.add(op, count)
