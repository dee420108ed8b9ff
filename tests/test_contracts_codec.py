"""The record codec (contracts/codec.py): one declared layout per stored record, read back
strictly by the contract, the SDK (from a view's JSON) and the light client."""

from __future__ import annotations

import pytest

from contracts.codec import RecordError
from contracts.dsc_records import Bid, Request
from contracts.registry_records import Device, Member

MEMBER = Member("vendor", b"\x01" * 96, b"\x02" * 256, b"\x03" * 20, True)


def test_a_record_is_stored_as_its_fields_in_order() -> None:
    assert MEMBER.to_value() == ["vendor", b"\x01" * 96, b"\x02" * 256, b"\x03" * 20, True]
    assert Member.from_value(MEMBER.to_value()) == MEMBER
    device = Device("relay", 1_700_000_000, b"\x04" * 20, b"")
    assert Device.from_value(device.to_value()) == device


@pytest.mark.parametrize("value, problem", [
    (["vendor", b"", b"", b"\x03" * 20], "a list of 5 values"),  # a field missing
    ("vendor", "a list of 5 values"),  # not a list at all
    (["vendor", b"", b"", b"\x03" * 20, 1], "Member.active: expected bool"),  # an int is not a bool
    ([7, b"", b"", b"\x03" * 20, True], "Member.role: expected str"),
    (["vendor", "0x01", b"", b"\x03" * 20, True], "Member.bls_key: expected bytes"),
])
def test_anything_else_is_refused_naming_the_field(value: object, problem: str) -> None:
    with pytest.raises(RecordError, match=problem):
        Member.from_value(value)  # type: ignore[arg-type]


def test_json_of_a_view_decodes_by_the_declared_field_types() -> None:
    raw = ["vendor", "0x" + "01" * 96, "0x" + "02" * 256, "0x" + "03" * 20, True]
    assert Member.from_json(raw) == MEMBER
    bid = Bid(b"\x05" * 32, 0, "committed", 500_000, 0, 0, "")
    assert Bid.from_json([("0x" + v.hex()) if isinstance(v, bytes) else v for v in bid.to_value()]) == bid  # type: ignore[union-attr]
    with pytest.raises(RecordError, match="not hex"):
        Member.from_json(["vendor", "0xzz", "0x", "0x" + "03" * 20, True])
    with pytest.raises(RecordError, match="a list of 16 values"):
        Request.from_json([])
