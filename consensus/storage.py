"""Durable consensus state: the epoch and view, whether it is established, the log entry.

The replica asks for a save (a `Persist` action) before anything that commits it (a
COMMIT, a PREPARE or a NEW-VIEW carrying its vote, a VIEW-CHANGE), and its node carries the
actions out in order, so a kill -9 and restart never makes it sign something that
contradicts what it signed before. The replica itself never calls storage: it is built
from `load()` and the node writes each `Persist`, and each `Finalize` in the block's own
store transaction (`put`). Block sync finalizes without a record: an entry at or below the
final head is stale and `Replica` drops it when it loads the state. `MemoryStorage` serves tests (a
"restart" reuses the object); `LmdbStorage` keeps the state under one key of the named
database b"consensus" in the node's LMDB environment, written in one transaction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

import lmdb
import rlp

from chain import DecodeError
from consensus.log import Entry

DATABASE_NAME = b"consensus"
STATE_KEY = b"state"


@dataclass(frozen=True)
class StoredState:
    view: int
    normal: bool  # False while the view change into `view` has not finished
    entry: Entry | None
    # The signed SUSPECT(view - 1) that justifies `view`, msgpack of its wire form (b""
    # in view 0): a restarted replica repeats it to replicas that missed it.
    suspect: bytes = b""
    # The epoch (first height of the bookkeeper set, chain/epochs.py) this state belongs
    # to: a replica of another epoch starts from view 0 instead.
    epoch: int = 1

    def to_bytes(self) -> bytes:
        entry = self.entry.to_bytes() if self.entry is not None else b""
        encoded: bytes = rlp.encode([self.view, int(self.normal), entry, self.suspect, self.epoch])
        return encoded

    def final_at(self, height: int) -> StoredState:
        """The record once block `height` is final: an entry at or below it is stale
        (checkpoints are folded into finality); the rest is the replica's to change."""
        if self.entry is None or self.entry.height > height:
            return self
        return dataclasses.replace(self, entry=None)

    @classmethod
    def from_bytes(cls, data: bytes) -> StoredState:
        try:
            view, normal, entry, suspect, epoch = rlp.decode(data)
            view_number = rlp.sedes.big_endian_int.deserialize(view)
            normal_flag = rlp.sedes.big_endian_int.deserialize(normal)
            epoch_start = rlp.sedes.big_endian_int.deserialize(epoch)
        except (rlp.exceptions.DecodingError, rlp.exceptions.DeserializationError,
                ValueError) as exc:
            raise DecodeError(f"not a stored consensus state: {exc}") from exc
        return cls(view_number, bool(normal_flag), Entry.from_bytes(entry) if entry else None,
                   suspect, epoch_start)


INITIAL_STATE = StoredState(view=0, normal=True, entry=None)


class ConsensusStorage(Protocol):
    def load(self) -> StoredState: ...

    def save(self, state: StoredState) -> None:
        """Durable when it returns."""
        ...


class MemoryStorage:
    def __init__(self) -> None:
        self._data: bytes | None = None

    def load(self) -> StoredState:
        # Round-trip through bytes so tests exercise the same codec as LMDB.
        return StoredState.from_bytes(self._data) if self._data is not None else INITIAL_STATE

    def save(self, state: StoredState) -> None:
        self._data = state.to_bytes()


class LmdbStorage:
    """Takes an environment the node opened (max_dbs >= 8, sync on)."""

    def __init__(self, env: lmdb.Environment) -> None:
        self._env = env
        self._db = env.open_db(DATABASE_NAME)

    def load(self) -> StoredState:
        with self._env.begin(db=self._db) as txn:
            return self.get(txn)

    def get(self, txn: lmdb.Transaction) -> StoredState:
        """The state as `txn` sees it (a write transaction sees its own writes)."""
        data = txn.get(STATE_KEY, db=self._db)
        return StoredState.from_bytes(bytes(data)) if data is not None else INITIAL_STATE

    def save(self, state: StoredState) -> None:
        with self._env.begin(write=True) as txn:
            self.put(txn, state)

    def put(self, txn: lmdb.Transaction, state: StoredState) -> None:
        """Write `state` within `txn`, a write transaction of the same environment (a
        `Finalize`: the block and this record commit together)."""
        txn.put(STATE_KEY, state.to_bytes(), db=self._db)
