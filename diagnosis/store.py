"""An agent's own state on disk (sqlite, one file per agent): its identity keys, what it
has done for each request (so a restarted agent repeats nothing: no second commit, no
second deposit), the salts of its sealed bids, the (request, kind) steps it accepted, the
log of sealed messages it sent and received, and its events (diagnosis.agents.Event: what
it sent, refused and computed, per request and step; served at `GET /events`).

Every write is one committed transaction made *before* the action it records is sent
(persist, then announce: style habit 5); an action whose effect is on chain is then
checked against the chain on restart, so a crash between the write and the send is
harmless. sqlite with `synchronous=FULL` and WAL: a SIGKILL loses nothing committed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
create table if not exists kv (key text primary key, value text not null);
create table if not exists requests (id integer primary key, state text not null);
create table if not exists accepted (request integer not null, kind text not null, primary key (request, kind));
create table if not exists messages (hash text primary key, direction text not null, request integer not null,
                                     kind text not null, peer text not null, at_ms integer not null);
create table if not exists events (seq integer primary key autoincrement, event text not null);
create table if not exists inbox (hash text primary key, data blob, arrival_ms integer not null,
                                  verdict text not null, detail text not null, held text not null);
create table if not exists copies (request integer not null, kind text not null, data blob not null,
                                   primary key (request, kind));
"""
PENDING = "pending"  # an inbox row's verdict while the receiver decides
VERDICTS_KEPT_MS = 600_000  # decided inbox rows are kept this long after arrival (10 freshness windows)
MESSAGES_KEPT_MAX = 100_000  # the sealed-message log is pruned to this many rows (oldest first)
EVENTS_KEPT_MAX = 200_000  # the event log likewise (a reader far behind misses the oldest)


@dataclass(frozen=True)
class Verdict:
    """What a receiver decided about one sealed message (its inbox row): `PENDING`,
    "accepted" or the reason it refused it, with the refusal's detail and, for
    `step_repeated`, the hash of the copy it holds (b"" when none)."""

    verdict: str
    detail: str = ""
    held: bytes = b""


class AgentStore:
    """`AgentStore(Path(":memory:"))` is a store that dies with the agent (one-process
    tests that run an agent without a service)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=full")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The writes inside happen together or not at all (a SIGKILL between an accepted
        step and its verdict would make the restarted receiver refuse its own step)."""
        self._db.execute("begin immediate")
        try:
            yield
        except BaseException:
            self._db.execute("rollback")
            raise
        self._db.execute("commit")

    # key-value (identity, counters) -----------------------------------------------------
    def get(self, key: str) -> Any:
        row = self._db.execute("select value from kv where key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        self._db.execute("insert or replace into kv (key, value) values (?, ?)", (key, json.dumps(value)))

    # per-request progress ---------------------------------------------------------------
    def request(self, request_id: int) -> dict[str, Any]:
        row = self._db.execute("select state from requests where id = ?", (request_id,)).fetchone()
        return {} if row is None else dict(json.loads(row[0]))

    def update(self, request_id: int, **changes: Any) -> dict[str, Any]:
        state = {**self.request(request_id), **changes}
        self._db.execute("insert or replace into requests (id, state) values (?, ?)",
                         (request_id, json.dumps(state, sort_keys=True)))
        return state

    def all_requests(self) -> list[int]:
        return [int(i) for (i,) in self._db.execute("select id from requests order by id").fetchall()]

    def open_requests(self) -> list[int]:
        """Requests this agent still has something to do for (not marked done)."""
        rows = self._db.execute("select id, state from requests order by id").fetchall()
        return [int(i) for i, state in rows if not json.loads(state).get("done")]

    # accepted steps (a repeated step is refused across restarts) ----------------------
    def accept_step(self, request_id: int, kind: str) -> bool:
        """Record (request, kind); False when it was already accepted."""
        cursor = self._db.execute("insert or ignore into accepted (request, kind) values (?, ?)", (request_id, kind))
        return cursor.rowcount == 1

    # sealed-message log -----------------------------------------------------------------
    def log_message(self, message_hash: bytes, direction: str, request_id: int, kind: str, peer: bytes,
                    at_ms: int) -> None:
        self._db.execute("insert or ignore into messages values (?, ?, ?, ?, ?, ?)",
                         ("0x" + message_hash.hex(), direction, request_id, kind, "0x" + peer.hex(), at_ms))
        self._db.execute("delete from messages where rowid <= (select max(rowid) from messages) - ?",
                         (MESSAGES_KEPT_MAX,))

    def received_after(self, rowid: int, count_max: int) -> list[tuple[int, str, int, str, int]]:
        """(rowid, kind, request, sender, at_ms) of messages received after `rowid`, oldest
        first (the phone app's notifications)."""
        rows = self._db.execute("select rowid, kind, request, peer, at_ms from messages where direction = 'received' "
                                "and rowid > ? order by rowid limit ?", (rowid, count_max)).fetchall()
        return [(int(r), str(k), int(q), str(p), int(t)) for r, k, q, p, t in rows]

    def messages(self, request_id: int) -> list[tuple[str, str, str]]:
        rows = self._db.execute("select direction, kind, hash from messages where request = ? order by rowid",
                                (request_id,)).fetchall()
        return [(str(d), str(k), str(h)) for d, k, h in rows]

    # the inbox: every authentic message received, its bytes until decided, its verdict ----
    def hold(self, message_hash: bytes, data: bytes, arrival_ms: int) -> None:
        """A message whose sender's signature checked, kept until the receiver decides
        (a restart decides it then)."""
        self._db.execute("insert into inbox values (?, ?, ?, ?, '', '')",
                         ("0x" + message_hash.hex(), data, arrival_ms, PENDING))

    def verdict(self, message_hash: bytes) -> Verdict | None:
        row = self._db.execute("select verdict, detail, held from inbox where hash = ?",
                               ("0x" + message_hash.hex(),)).fetchone()
        return None if row is None else Verdict(str(row[0]), str(row[1]), bytes.fromhex(str(row[2])))

    def decide(self, message_hash: bytes, verdict: Verdict, now_ms: int) -> None:
        self._db.execute("update inbox set data = null, verdict = ?, detail = ?, held = ? where hash = ?",
                         (verdict.verdict, verdict.detail, verdict.held.hex(), "0x" + message_hash.hex()))
        self._db.execute("delete from inbox where verdict != ? and arrival_ms < ?",
                         (PENDING, now_ms - VERDICTS_KEPT_MS))

    def undecided(self) -> list[tuple[bytes, int]]:
        """(bytes, arrival) of the messages held and not decided, oldest first."""
        rows = self._db.execute("select data, arrival_ms from inbox where verdict = ? order by arrival_ms",
                                (PENDING,)).fetchall()
        return [(bytes(d), int(a)) for d, a in rows]

    def undecided_count(self) -> int:
        return int(self._db.execute("select count(*) from inbox where verdict = ?", (PENDING,)).fetchone()[0])

    def held_hash(self, request_id: int, kind: str) -> bytes | None:
        """The hash of the message of `kind` accepted for the request (None: none yet)."""
        row = self._db.execute("select hash from messages where direction = 'received' and request = ? and kind = ? "
                               "order by rowid desc limit 1", (request_id, kind)).fetchone()
        return None if row is None else bytes.fromhex(str(row[0])[2:])

    # the sender's copy of a step's message in flight: sent again, never sealed again ------
    def keep_copy(self, message_hash: bytes, request_id: int, kind: str, peer: bytes, data: bytes,
                  at_ms: int) -> None:
        """The sealed copy about to leave: logged as sent and kept to be sent again until
        the receiver decides (a restart sends it again too)."""
        with self.transaction():
            self.log_message(message_hash, "sent", request_id, kind, peer, at_ms)
            self._db.execute("insert or replace into copies values (?, ?, ?)", (request_id, kind, data))

    def copy(self, request_id: int, kind: str) -> bytes | None:
        row = self._db.execute("select data from copies where request = ? and kind = ?",
                               (request_id, kind)).fetchone()
        return None if row is None else bytes(row[0])

    def drop_copy(self, request_id: int, kind: str) -> None:
        """The receiver refused the copy: the next try seals a new one."""
        self._db.execute("delete from copies where request = ? and kind = ?", (request_id, kind))

    # events --------------------------------------------------------------------------------
    def add_event(self, event: dict[str, Any]) -> None:
        cursor = self._db.execute("insert into events (event) values (?)", (json.dumps(event, sort_keys=True),))
        if cursor.lastrowid is not None and cursor.lastrowid % 1_000 == 0:  # prune now and then, not per write
            self._db.execute("delete from events where seq <= ?", (cursor.lastrowid - EVENTS_KEPT_MAX,))

    def events_since(self, seq: int, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """Events after sequence number `seq`, oldest first, at most `limit`."""
        rows = self._db.execute("select seq, event from events where seq > ? order by seq limit ?",
                                (seq, limit)).fetchall()
        return [(int(n), dict(json.loads(e))) for n, e in rows]
