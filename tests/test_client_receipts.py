"""client/receipts.py: a receipt decodes once from the node's JSON (rpc/encoding.py's own
encoder of a ledger Receipt), typed, and encodes back to the same JSON; bad shapes are a
typed error."""

from __future__ import annotations

import pytest

from chain import Event as LedgerEvent
from chain import Receipt as LedgerReceipt
from client import BadReply, Receipt, from_hex
from rpc.encoding import receipt_json

CONTRACT = b"\x07" * 20
TX = b"\xab" * 32
BLOCK = b"\xcd" * 32


def _node_json(status: int = 1, error: bytes = b"") -> dict:
    event = LedgerEvent.create(CONTRACT, "RequestOpened", {"request": 7, "device": b"\x01" * 20, "type": "meter",
                                                           "tags": [b"\x02", 3], "note": "0xnot-hex"})
    return {**receipt_json(LedgerReceipt(status, 21_000, [event], error)), "transactionHash": "0x" + TX.hex(),
            "blockNumber": 12, "blockHash": "0x" + BLOCK.hex(), "index": 3}


def test_a_receipt_decodes_typed_and_encodes_back_to_the_nodes_json() -> None:
    raw = _node_json()
    receipt = Receipt.from_json(raw)
    assert receipt.ok and receipt.transaction_hash == TX and receipt.block_hash == BLOCK
    assert (receipt.block_number, receipt.index, receipt.gas_used, receipt.error) == (12, 3, 21_000, None)
    opened = receipt.event("RequestOpened")
    assert opened.contract == CONTRACT and opened.int_of("request") == 7 and opened.bytes_of("device") == b"\x01" * 20
    assert opened["type"] == "meter" and opened["tags"] == [b"\x02", 3] and opened["note"] == "0xnot-hex"
    assert receipt.to_json() == raw
    assert receipt.tx == "0x" + TX.hex() and receipt.block_hash_hex == "0x" + BLOCK.hex()


def test_a_reverted_receipt_carries_its_reason() -> None:
    receipt = Receipt.from_json(_node_json(status=0, error=b"bid-out-of-range"))
    assert not receipt.ok and receipt.error == "bid-out-of-range"


@pytest.mark.parametrize("broken", [
    {"status": 1},  # fields missing
    {**_node_json(), "transactionHash": "0xzz"},  # not hex
    {**_node_json(), "events": [{"name": "X"}]},  # an event without its fields
    [1, 2],
])
def test_what_is_not_a_receipt_is_a_typed_error(broken) -> None:
    with pytest.raises(BadReply):
        Receipt.from_json(broken)


def test_missing_events_and_wrong_field_types_are_typed_errors() -> None:
    receipt = Receipt.from_json(_node_json())
    with pytest.raises(BadReply):
        receipt.event("Paid")
    with pytest.raises(BadReply):
        receipt.event("RequestOpened").int_of("device")
    assert receipt.events_named("Paid") == [] and from_hex("0x0102") == b"\x01\x02"
