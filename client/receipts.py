"""A final receipt as the client holds it: decoded once from the node's JSON (rpc/encoding.py
`receipt_json`, with its transaction hash, block and index), typed, with bytes as bytes.
`to_json` gives the node's JSON back (for printing and for records kept as JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chain import Value
from client.errors import BadReply


def from_hex(value: str) -> bytes:
    """0x-hex (or bare hex) as the node writes bytes."""
    try:
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    except (ValueError, AttributeError) as exc:
        raise BadReply(f"not hex: {value!r:.80}") from exc


def to_json_value(value: Value) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    return value


def from_json_value(value: Any) -> Value:
    """The inverse of `to_json_value` (as the node's value_from_json: "0x" strings are bytes;
    text that only looks like it stays text, so a receipt never fails on a string field)."""
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return value
    if isinstance(value, list):
        return [from_json_value(v) for v in value]
    if isinstance(value, bool | int | str):
        return value
    raise BadReply(f"not a contract value: {value!r:.80}")


@dataclass(frozen=True)
class Event:
    contract: bytes
    name: str
    fields: Mapping[str, Value]

    @classmethod
    def from_json(cls, raw: Any) -> Event:
        try:
            return cls(from_hex(raw["contract"]), str(raw["name"]),
                       {str(k): from_json_value(v) for k, v in raw["fields"].items()})
        except (KeyError, TypeError, AttributeError) as exc:
            raise BadReply(f"not an event: {raw!r:.120}") from exc

    def __getitem__(self, field: str) -> Value:
        return self.fields[field]

    def int_of(self, field: str) -> int:
        value = self.fields[field]
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadReply(f"{self.name}.{field} is not an integer: {value!r:.80}")
        return value

    def bytes_of(self, field: str) -> bytes:
        value = self.fields[field]
        if not isinstance(value, bytes):
            raise BadReply(f"{self.name}.{field} is not bytes: {value!r:.80}")
        return value

    def to_json(self) -> dict[str, Any]:
        return {"contract": "0x" + self.contract.hex(), "name": self.name,
                "fields": {k: to_json_value(v) for k, v in self.fields.items()}}


@dataclass(frozen=True)
class Receipt:
    transaction_hash: bytes
    block_number: int
    index: int
    status: int  # 1: the call succeeded; 0: it reverted (`error` says why)
    gas_used: int
    error: str | None
    events: tuple[Event, ...]
    block_hash: bytes | None = None  # tx_receipt names it; a block's receipt list does not

    @classmethod
    def from_json(cls, raw: Any) -> Receipt:
        try:
            return cls(from_hex(raw["transactionHash"]), int(raw["blockNumber"]), int(raw["index"]),
                       int(raw["status"]), int(raw["gasUsed"]), raw.get("error") or None,
                       tuple(Event.from_json(e) for e in raw["events"]),
                       from_hex(raw["blockHash"]) if raw.get("blockHash") else None)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadReply(f"not a receipt: {raw!r:.120}") from exc

    @property
    def ok(self) -> bool:
        return self.status == 1

    @property
    def tx(self) -> str:
        """The transaction hash as the node spells it (0x-hex)."""
        return "0x" + self.transaction_hash.hex()

    @property
    def block_hash_hex(self) -> str | None:
        return "0x" + self.block_hash.hex() if self.block_hash is not None else None

    def events_named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]

    def event(self, name: str) -> Event:
        """The first event called `name`; BadReply when there is none."""
        for e in self.events:
            if e.name == name:
                return e
        raise BadReply(f"receipt of {self.tx} has no {name} event")

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "gasUsed": self.gas_used, "events": [e.to_json() for e in self.events],
                "error": self.error, "transactionHash": self.tx, "blockNumber": self.block_number,
                **({"blockHash": "0x" + self.block_hash.hex()} if self.block_hash is not None else {}),
                "index": self.index}
