"""Byte budgets of replies: `response_bytes_max` for one reply, `batch_response_bytes_max`
for all replies of a batch, `replies_bytes_max` for all replies being built at once (many
connections each sending a batch). A reply over budget becomes JSON-RPC -32005 with
data.limit.

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
class ServerBudget:
    """Bytes every reply being built may still take, across requests."""

    left: int


@dataclass
class BatchBudget:
    response_bytes_max: int
    left: int  # bytes the batch's replies may still take
    server: ServerBudget
    taken: int = 0  # from `server`, given back by `close` once the request is answered

    def take(self, size: int) -> None:
        if size > self.response_bytes_max:
            raise over_budget("response_bytes_max", f"reply of {size} bytes > {self.response_bytes_max}")
        if size > self.left:
            raise over_budget("batch_response_bytes_max", f"reply of {size} bytes, {self.left} left in the batch")
        if size > self.server.left:
            raise over_budget("replies_bytes_max", f"reply of {size} bytes, {self.server.left} left for all replies")
        self.left -= size
        self.server.left -= size
        self.taken += size

    def give_back(self, size: int) -> None:
        self.left += size
        self.server.left += size
        self.taken -= size

    def close(self) -> None:
        self.server.left += self.taken
        self.taken = 0


@dataclass
class CallBudget:
    """One call's share of its batch's budget."""

    batch: BatchBudget
    reserved: int = 0

    def reserve(self, estimate: int) -> None:
        self.batch.take(estimate)
        self.reserved += estimate

    def charge(self, size: int) -> None:
        self.batch.give_back(self.reserved)
        self.reserved = 0
        self.batch.take(size)


# The budget of the call being served (set per call task by RpcServer.call).
current: contextvars.ContextVar[CallBudget] = contextvars.ContextVar("rpc_call_budget")
