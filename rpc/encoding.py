"""JSON shapes of ledger records: bytes as 0x-hex, records with their raw rlp alongside so
that a client can re-hash them (block hash = keccak256(rawHeader))."""

from __future__ import annotations

from typing import Any

import rlp

from chain import Block, BlockHeader, Event, Receipt, Transaction, Value
from rpc.errors import invalid_params


def hex_bytes(data: bytes) -> str:
    return "0x" + data.hex()


def parse_hex(value: Any, name: str, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise invalid_params(f"{name} must be a 0x-hex string")
    try:
        data = bytes.fromhex(value[2:])
    except ValueError as exc:
        raise invalid_params(f"{name} is not hex") from exc
    if length is not None and len(data) != length:
        raise invalid_params(f"{name} must be {length} bytes")
    return data


def value_to_json(value: Value) -> Any:
    """Typed values in JSON: bytes as 0x-hex, ints as JSON numbers, lists recursively."""
    if isinstance(value, bytes):
        return hex_bytes(value)
    if isinstance(value, list):
        return [value_to_json(v) for v in value]
    return value


def value_from_json(value: Any, depth: int = 0) -> Value:
    """Contract arguments from JSON: "0x..." strings are bytes, other strings stay text."""
    if depth > 8:
        raise invalid_params("arguments nested too deep")
    if isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return parse_hex(value, "argument") if value.startswith("0x") else value
    if isinstance(value, list):
        return [value_from_json(v, depth + 1) for v in value]
    raise invalid_params(f"unsupported argument type {type(value).__name__}")


def header_json(header: BlockHeader) -> dict[str, Any]:
    return {
        "number": header.number,
        "hash": hex_bytes(header.hash),
        "parentHash": hex_bytes(header.parent_hash),
        "timestampMs": header.timestamp_ms,
        "proposer": header.proposer,
        "view": header.view,
        "stateRoot": hex_bytes(header.state_root),
        "transactionRoot": hex_bytes(header.transaction_root),
        "receiptRoot": hex_bytes(header.receipt_root),
        "gasUsed": header.gas_used,
        "extra": hex_bytes(header.extra),
        "rawHeader": hex_bytes(rlp.encode(header)),
    }


def block_json(block: Block, full: bool) -> dict[str, Any]:
    result = header_json(block.header)
    result["transactions"] = [hex_bytes(rlp.encode(tx)) if full else hex_bytes(tx.hash)
                              for tx in block.transactions]
    result["commit"] = None
    if block.certificate:
        certificate = block.certificate[0]
        result["commit"] = {"view": certificate.view,
                            "votes": [{"replica": v.replica, "signature": hex_bytes(v.signature)}
                                      for v in certificate.votes],
                            "finality": [{"replica": v.replica, "signature": hex_bytes(v.signature)}
                                         for v in certificate.finality]}
    return result


def transaction_json(tx: Transaction) -> dict[str, Any]:
    return {
        "hash": hex_bytes(tx.hash),
        "chainId": tx.chain_id,
        "nonce": tx.nonce,
        "sender": hex_bytes(tx.sender),
        "from": hex_bytes(tx.sender_address),
        "to": hex_bytes(tx.to),
        "method": tx.method_name,
        "args": [value_to_json(a) for a in tx.decoded_args],
        "value": tx.value,
        "gasLimit": tx.gas_limit,
        "raw": hex_bytes(rlp.encode(tx)),
    }


def event_json(event: Event) -> dict[str, Any]:
    return {"contract": hex_bytes(event.contract), "name": event.name.decode(errors="replace"),
            "fields": {k: value_to_json(v) for k, v in event.field_values().items()}}


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    return {"status": receipt.status, "gasUsed": receipt.gas_used,
            "events": [event_json(e) for e in receipt.events],
            "error": receipt.error.decode(errors="replace") or None}
