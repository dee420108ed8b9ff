"""The explorer's index: final blocks, transactions, receipts' events and the DSC requests
in SQLite, for the queries the tries cannot answer (history by address or device, auctions
by device type, pages of blocks). Never a source of truth: every row comes from a final
block the chain served, the index is thrown away and rebuilt whenever it does not match the
chain it follows (another genesis, another block at a height it holds, an older schema).

One writer (the indexer) and any number of readers, each with its own connection (WAL).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1"
SCHEMA = """
create table if not exists meta (key text primary key, value text not null);
create table if not exists blocks (
    number integer primary key, hash text not null unique, parent text not null, timestamp_ms integer not null,
    proposer integer not null, view integer not null, state_root text not null, tx_root text not null,
    receipt_root text not null, gas_used integer not null, tx_count integer not null, raw_header text not null,
    commit_json text);
create table if not exists txs (
    hash text primary key, block integer not null, idx integer not null, sender text not null,
    contract text not null, method text not null, args_json text not null, value integer not null,
    status integer not null, gas_used integer not null, error text);
create index if not exists txs_by_sender on txs (sender, block);
create index if not exists txs_by_block on txs (block, idx);
create table if not exists events (
    id integer primary key, block integer not null, tx_index integer not null, tx_hash text,
    contract text not null, name text not null, request integer, fields_json text not null);
create index if not exists events_by_name on events (name, id);
create index if not exists events_by_request on events (request, id);
create index if not exists events_by_block on events (block, id);
create table if not exists refs (ref text not null, event_id integer not null,
                                 primary key (ref, event_id)) without rowid;
create table if not exists requests (
    id integer primary key, device text not null, device_type text not null, opened_block integer not null,
    opened_ms integer not null, in_warranty integer not null, status text not null, node text,
    price integer, updated_block integer not null);
create index if not exists requests_by_type on requests (device_type, id);
create index if not exists requests_by_device on requests (device, id);
"""
# Event fields whose values name a party or a device: 20-byte addresses (members, devices)
# and 32-byte hashes. Each such value becomes a ref, so a search for an address or a device
# id finds every event that mentions it.
REF_BYTES = (20, 32)
PAGE_MAX = 100  # rows per page of every list query
PARTIES_MAX = 5_000  # registrations the page's labels cover (the newest)
# DSC events that move a request to a status, with the status they mean
REQUEST_STATUS = {"AuctionClosed": "closed", "Assigned": "assigned", "ServiceReported": "reported",
                  "ServiceCompleted": "completed", "Defaulted": "defaulted", "Disputed": "disputed",
                  "Resolved": "resolved"}


@dataclass(frozen=True)
class IndexedBlock:
    """One final block as the chain served it (JSON shapes of rpc/encoding.py)."""

    block: dict[str, Any]  # chain_getBlock: header fields, rawHeader, commit
    transactions: list[dict[str, Any]]  # transaction_json of each, in block order
    receipts: list[dict[str, Any]]  # chain_getBlockReceipts: one per tx, then end-of-block


class Index:
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("pragma journal_mode=wal")
            # the chain is the source of truth: a lost tail of the index is rebuilt, not fsynced
            self._db.execute("pragma synchronous=normal")
            self._db.executescript(SCHEMA)
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    # identity ---------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self._db.execute("select value from meta where key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def matches(self, chain_id: int, genesis_hash: str) -> bool:
        return (self.meta("schema") == SCHEMA_VERSION and self.meta("chain_id") == str(chain_id)
                and self.meta("genesis_hash") == genesis_hash)

    def reset(self, chain_id: int, genesis_hash: str) -> None:
        """Empty the index for the chain (chain_id, genesis_hash)."""
        with self._write():
            for table in ("blocks", "txs", "events", "refs", "requests", "meta"):
                self._db.execute(f"delete from {table}")  # noqa: S608 - fixed table names
            self._db.executemany("insert into meta (key, value) values (?, ?)",
                                 [("schema", SCHEMA_VERSION), ("chain_id", str(chain_id)),
                                  ("genesis_hash", genesis_hash)])

    def height(self) -> int:
        """The highest indexed block, -1 when empty."""
        row = self._db.execute("select max(number) from blocks").fetchone()
        return -1 if row[0] is None else int(row[0])

    def block_hash(self, number: int) -> str | None:
        row = self._db.execute("select hash from blocks where number = ?", (number,)).fetchone()
        return None if row is None else str(row[0])

    # writing ----------------------------------------------------------------------------
    def _write(self) -> sqlite3.Connection:
        # `with connection` commits or rolls back; begin explicitly (isolation_level None)
        self._db.execute("begin")
        return self._db

    def add(self, blocks: list[IndexedBlock], contract_names: dict[str, str]) -> None:
        """Append consecutive final blocks in one transaction (all or none)."""
        with self._write():
            for item in blocks:
                self._add_block(item, contract_names)
            # counted as they are added: a count(*) on every page would read whole tables
            self._count("transactions", sum(len(item.transactions) for item in blocks))
            self._count("events", sum(len(r["events"]) for item in blocks for r in item.receipts))

    def _count(self, name: str, added: int) -> None:
        self._db.execute("insert into meta (key, value) values (?, ?) on conflict (key) do update "
                         "set value = cast(value as integer) + excluded.value", (name, str(added)))

    def _add_block(self, item: IndexedBlock, names: dict[str, str]) -> None:
        block = item.block
        number = block["number"]
        # in order; a node holding blocks from a base height leaves a gap after genesis
        assert number > self.height(), f"block {number} after {self.height()}: blocks are added in order"
        self._db.execute(
            "insert into blocks values (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (number, block["hash"], block["parentHash"], block["timestampMs"], block["proposer"], block["view"],
             block["stateRoot"], block["transactionRoot"], block["receiptRoot"], block["gasUsed"],
             len(item.transactions), block["rawHeader"], json.dumps(block["commit"])))
        for index, tx in enumerate(item.transactions):
            receipt = item.receipts[index]
            self._db.execute("insert into txs values (?,?,?,?,?,?,?,?,?,?,?)",
                             (tx["hash"], number, index, tx["from"], names.get(tx["to"], tx["to"]), tx["method"],
                              json.dumps(tx["args"]), tx["value"], receipt["status"], receipt["gasUsed"],
                              receipt["error"]))
        for receipt in item.receipts:
            for event in receipt["events"]:
                self._add_event(number, block["timestampMs"], receipt, event, names)

    def _add_event(self, number: int, time_ms: int, receipt: dict[str, Any], event: dict[str, Any],
                   names: dict[str, str]) -> None:
        fields = event["fields"]
        contract = names.get(event["contract"], event["contract"])
        request = fields.get("request") if contract == "dsc" and isinstance(fields.get("request"), int) else None
        cursor = self._db.execute(
            "insert into events (block, tx_index, tx_hash, contract, name, request, fields_json) "
            "values (?,?,?,?,?,?,?)",
            (number, receipt["index"], receipt["transactionHash"], contract, event["name"], request,
             json.dumps(fields)))
        refs = {value for value in fields.values() if _is_ref(value)}
        refs |= {value for value in fields.values() if isinstance(value, list) for value in value if _is_ref(value)}
        self._db.executemany("insert or ignore into refs values (?, ?)", [(r, cursor.lastrowid) for r in refs])
        if request is not None:
            self._track_request(number, time_ms, request, event["name"], fields)

    def _track_request(self, number: int, time_ms: int, request: int, name: str, fields: dict[str, Any]) -> None:
        if name == "RequestOpened":
            self._db.execute("insert or replace into requests values (?,?,?,?,?,?,?,?,?,?)",
                             (request, fields["device"], fields["device_type"], number, time_ms,
                              int(bool(fields.get("in_warranty"))), "bidding", None, None, number))
            return
        status = REQUEST_STATUS.get(name)
        if status is None:
            return
        if name == "Assigned":
            self._db.execute("update requests set status = ?, node = ?, price = ?, updated_block = ? where id = ?",
                             (status, fields["node"], fields["price"], number, request))
        elif name == "AuctionClosed" and not fields.get("winner"):
            self._db.execute("update requests set status = 'failed', updated_block = ? where id = ?",
                             (number, request))
        elif name != "AuctionClosed":
            self._db.execute("update requests set status = ?, updated_block = ? where id = ?",
                             (status, number, request))

    # reading ----------------------------------------------------------------------------
    def blocks(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        top = self.height() + 1 if before is None else before
        rows = self._db.execute("select * from blocks where number < ? order by number desc limit ?",
                                (top, _page(limit))).fetchall()
        return [_block_row(r) for r in rows]

    def block(self, number: int) -> dict[str, Any] | None:
        row = self._db.execute("select * from blocks where number = ?", (number,)).fetchone()
        return None if row is None else _block_row(row)

    def block_number(self, block_hash: str) -> int | None:
        row = self._db.execute("select number from blocks where hash = ?", (block_hash.lower(),)).fetchone()
        return None if row is None else int(row[0])

    def block_txs(self, number: int) -> list[dict[str, Any]]:
        rows = self._db.execute("select * from txs where block = ? order by idx", (number,)).fetchall()
        return [_tx_row(r) for r in rows]

    def tx(self, tx_hash: str) -> dict[str, Any] | None:
        row = self._db.execute("select * from txs where hash = ?", (tx_hash.lower(),)).fetchone()
        return None if row is None else _tx_row(row)

    def txs_of(self, sender: str, before: int | None, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute("select * from txs where sender = ? and block < ? order by block desc, idx desc "
                                "limit ?", (sender.lower(), _top(before), _page(limit))).fetchall()
        return [_tx_row(r) for r in rows]

    def events_of_tx(self, number: int, index: int) -> list[dict[str, Any]]:
        rows = self._db.execute("select * from events where block = ? and tx_index = ? order by id",
                                (number, index)).fetchall()
        return [_event_row(r) for r in rows]

    def events_of_block_end(self, number: int, tx_count: int) -> list[dict[str, Any]]:
        return self.events_of_tx(number, tx_count)

    def events_mentioning(self, ref: str, before: int | None, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "select e.* from refs r join events e on e.id = r.event_id where r.ref = ? and e.id < ? "
            "order by e.id desc limit ?", (ref.lower(), _top(before), _page(limit))).fetchall()
        return [_event_row(r) for r in rows]

    def last_event(self, name: str, ref: str, before: int) -> dict[str, Any] | None:
        """The newest event `name` mentioning `ref` with an id below `before`."""
        row = self._db.execute(
            "select e.* from refs r join events e on e.id = r.event_id where r.ref = ? and e.id < ? and e.name = ? "
            "order by e.id desc limit 1", (ref.lower(), before, name)).fetchone()
        return None if row is None else _event_row(row)

    def events_named(self, names: tuple[str, ...], before: int | None, limit: int) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(names))
        rows = self._db.execute(f"select * from events where name in ({marks}) and id < ? "  # noqa: S608
                                "order by id desc limit ?", (*names, _top(before), _page(limit))).fetchall()
        return [_event_row(r) for r in rows]

    def registrations(self) -> list[dict[str, Any]]:
        """The newest PARTIES_MAX registrations (members with their role, devices with their
        type), oldest first, for the page's labels."""
        rows = self._db.execute("select * from (select * from events where name in ('MemberRegistered', "
                                "'DeviceRegistered') order by id desc limit ?) order by id", (PARTIES_MAX,)).fetchall()
        return [_event_row(r) for r in rows]

    def events_of_request(self, request: int) -> list[dict[str, Any]]:
        rows = self._db.execute("select * from events where request = ? order by id", (request,)).fetchall()
        return [_event_row(r) for r in rows]

    def requests(self, before: int | None, limit: int, device_type: str | None = None,
                 device: str | None = None) -> list[dict[str, Any]]:
        where = ["id < ?"]
        params: list[Any] = [_top(before)]
        if device_type:
            where.append("device_type = ?")
            params.append(device_type)
        if device:
            where.append("device = ?")
            params.append(device.lower())
        rows = self._db.execute(f"select * from requests where {' and '.join(where)} "  # noqa: S608
                                "order by id desc limit ?", (*params, _page(limit))).fetchall()
        return [dict(r) for r in rows]

    def request(self, request: int) -> dict[str, Any] | None:
        row = self._db.execute("select * from requests where id = ?", (request,)).fetchone()
        return None if row is None else dict(row)

    def counts(self) -> dict[str, int]:
        requests = self._db.execute("select max(id) from requests").fetchone()[0]  # the DSC counts from 1
        return {"blocks": self.height() + 1, "transactions": int(self.meta("transactions") or 0),
                "events": int(self.meta("events") or 0), "requests": requests or 0}


def _is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("0x") and (len(value) - 2) // 2 in REF_BYTES


def _page(limit: int) -> int:
    return max(1, min(limit, PAGE_MAX))


def _top(before: int | None) -> int:
    return (1 << 62) if before is None else before


def _block_row(row: sqlite3.Row) -> dict[str, Any]:
    found = dict(row)
    found["commit"] = json.loads(found.pop("commit_json") or "null")
    return found


def _tx_row(row: sqlite3.Row) -> dict[str, Any]:
    found = dict(row)
    found["args"] = json.loads(found.pop("args_json"))
    return found


def _event_row(row: sqlite3.Row) -> dict[str, Any]:
    found = dict(row)
    found["fields"] = json.loads(found.pop("fields_json"))
    return found
