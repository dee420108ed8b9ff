"""Byte budgets of replies: `response_bytes_max` for one reply, `batch_response_bytes_max`
for all replies of a batch. A reply over budget becomes JSON-RPC -32005 with data.limit.

Methods whose answer can be large reserve their size estimate before doing the work
(`reserve`), so a batch of 100 full blocks does the work of the few that fit, not of all
100; every reply is then charged its real encoded size (`charge`)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from rpc.errors import LIMIT_EXCEEDED, RpcError


def over_budget(limit: str, detail: str) -> RpcError:
    return RpcError(LIMIT_EXCEEDED, detail, {"limit": limit})


@dataclass
class BatchBudget:
    response_bytes_max: int
    left: int  # bytes the batch's replies may still take

    def take(self, size: int) -> None:
        if size > self.response_bytes_max:
            raise over_budget("response_bytes_max", f"reply of {size} bytes > {self.response_bytes_max}")
        if size > self.left:
            raise over_budget("batch_response_bytes_max", f"reply of {size} bytes, {self.left} left in the batch")
        self.left -= size


@dataclass
class CallBudget:
    """One call's share of its batch's budget."""

    batch: BatchBudget
    reserved: int = 0

    def reserve(self, estimate: int) -> None:
        self.batch.take(estimate)
        self.reserved += estimate

    def charge(self, size: int) -> None:
        self.batch.left += self.reserved
        self.reserved = 0
        self.batch.take(size)


# The budget of the call being served (set per call task by RpcServer.call).
current: contextvars.ContextVar[CallBudget] = contextvars.ContextVar("rpc_call_budget")
