"""Maintenance records (paper III.D, Fig. 3): every completed service is stored with its
device type, diagnosis node, transaction value, maintenance mode, the hash of the service
file (requester ID, responder ID, failure type, diagnosis time) and the credits the two
sides gave each other. Queryable by device and by diagnosis node, page by page.

Only the DSC contract writes records (a record exists only for a confirmed service).
"""

from __future__ import annotations

from typing import Any

from chain import Value
from contracts.addresses import DSC, RECORDS
from contracts.common import int_key, require
from contracts.params import integer
from crypto import Address
from vm import CallContext, NativeContract, method, view

NO_RATING = -1  # a side that has not rated yet
SIDES = ("requester", "node")  # requester rates the node; node rates the device


def record_key(request_id: int) -> bytes:
    return int_key(b"r:", request_id)


def count_key(prefix: bytes, member: Address) -> bytes:
    return prefix + member + b":n"


def index_key(prefix: bytes, member: Address, position: int) -> bytes:
    return prefix + member + b":" + position.to_bytes(8, "big")


BY_DEVICE = b"d:"
BY_NODE = b"v:"


LIMITS = {"page_max": 100}  # defaults; each is at least 1


def limits(params: dict[str, Any]) -> dict[str, int]:
    return {name: integer(params, "records", name, default, low=1) for name, default in LIMITS.items()}


def validate_params(params: dict[str, Any]) -> None:
    limits(params)


class Records(NativeContract):
    name = "records"
    address = RECORDS

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.page_max = limits(params)["page_max"]

    @method
    def add(self, ctx: CallContext, request_id: int, device: bytes, node: bytes, device_type: str,
            value: int, mode: str, service_hash: bytes, diagnosis_time_s: int) -> None:
        require(ctx.sender == DSC, "not-authorized", "records come from completed DSC services")
        assert ctx.get(record_key(request_id)) is None, "a service is recorded once"
        record: list[Value] = [request_id, device, node, device_type, value, mode, service_hash,
                               diagnosis_time_s, NO_RATING, NO_RATING]
        ctx.set_value(record_key(request_id), record)
        for prefix, member in ((BY_DEVICE, device), (BY_NODE, node)):
            count = ctx.get_int(count_key(prefix, member))
            ctx.set_value(index_key(prefix, member, count), request_id)
            ctx.set_value(count_key(prefix, member), count + 1)
        ctx.emit("MaintenanceRecorded", request=request_id, device=device, node=node,
                 device_type=device_type, value=value, mode=mode, service_hash=service_hash)

    @method
    def add_rating(self, ctx: CallContext, request_id: int, side: str, rating: int) -> None:
        """Store the credit one side gave the other (index 8: requester's, 9: node's)."""
        require(ctx.sender == DSC, "not-authorized", "ratings come from the DSC")
        assert side in SIDES, f"side is one of {SIDES}"
        record = self.record(ctx, request_id)
        assert isinstance(record, list)
        record[8 + SIDES.index(side)] = rating
        ctx.set_value(record_key(request_id), record)

    @view
    def record(self, ctx: CallContext, request_id: int) -> Value:
        """[request_id, device, node, device_type, value, mode, service_hash,
        diagnosis_time_s, rating_by_requester, rating_by_node] (-1 = not rated yet)."""
        stored = ctx.get_value(record_key(request_id))
        require(stored is not None, "unknown-record", str(request_id))
        assert stored is not None
        return stored

    @view
    def count_by_device(self, ctx: CallContext, device: bytes) -> int:
        return ctx.get_int(count_key(BY_DEVICE, device))

    @view
    def count_by_node(self, ctx: CallContext, node: bytes) -> int:
        return ctx.get_int(count_key(BY_NODE, node))

    @view
    def by_device(self, ctx: CallContext, device: bytes, start: int, count: int) -> Value:
        """Records of `device`, oldest first, from position `start` (at most page_max)."""
        return self._page(ctx, BY_DEVICE, device, start, count)

    @view
    def by_node(self, ctx: CallContext, node: bytes, start: int, count: int) -> Value:
        """Records of diagnosis node `node`, oldest first, from position `start`."""
        return self._page(ctx, BY_NODE, node, start, count)

    def _page(self, ctx: CallContext, prefix: bytes, member: Address, start: int, count: int) -> Value:
        require(start >= 0 and 0 <= count <= self.page_max, "bad-page",
                f"start >= 0 and count at most {self.page_max}")
        end = min(start + count, ctx.get_int(count_key(prefix, member)))
        ctx.steps(max(end - start, 0))
        page: list[Value] = []
        for position in range(start, end):
            request_id = ctx.get_int(index_key(prefix, member, position))
            page.append(self.record(ctx, request_id))
        return page
