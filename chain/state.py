"""World state: accounts and contract storage over the state Merkle Patricia trie.

Writes go to an in-memory overlay with a journal (STYLE.md habit 4): `snapshot()` marks a
point, `revert(mark)` undoes every write after it. `flush()` moves the overlay into the
trie once per block (DESIGN.md decision 4) and returns the new root; it may only run when
no snapshot is open. Trie keys are keccak256 of the logical key (a "secure trie", as in
Ethereum), so no caller can make the trie deep by choosing keys.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Protocol

import rlp
from trie import HexaryTrie

from crypto.hashing import Hash32, keccak256
from crypto.keys import Address

ACCOUNT_PREFIX = b"acct:"
STORAGE_PREFIX = b"stor:"


class NodeSource(Protocol):
    def node(self, node_hash: bytes) -> bytes | None: ...


class NodeOverlay(MutableMapping[bytes, bytes]):
    """Trie node database for one execution: new nodes stay in `written` until the block
    is persisted; reads fall through to the store."""

    def __init__(self, source: NodeSource | None) -> None:
        self.source = source
        self.written: dict[bytes, bytes] = {}

    def __getitem__(self, key: bytes) -> bytes:
        value = self.written.get(key)
        if value is None and self.source is not None:
            value = self.source.node(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.written[key] = value

    def __delitem__(self, key: bytes) -> None:
        # Nodes are content-addressed and shared between versions: never delete.
        pass

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.written)

    def __len__(self) -> int:
        return len(self.written)


def trie_key(key: bytes) -> Hash32:
    return keccak256(key)


def account_key(address: Address) -> bytes:
    return ACCOUNT_PREFIX + address


def storage_key(contract: Address, key: bytes) -> bytes:
    return STORAGE_PREFIX + contract + b":" + key


@dataclass(frozen=True)
class Account:
    nonce: int
    balance: int

    def encode(self) -> bytes:
        return rlp.encode([self.nonce, self.balance])

    @classmethod
    def decode(cls, data: bytes) -> Account:
        nonce, balance = rlp.decode(data)
        return cls(int.from_bytes(nonce, "big"), int.from_bytes(balance, "big"))


_ABSENT = object()


class State:
    def __init__(self, nodes: NodeOverlay, root: Hash32) -> None:
        self.nodes = nodes
        self._trie = HexaryTrie(nodes, root)
        self._overlay: dict[bytes, bytes | None] = {}
        self._journal: list[tuple[bytes, object]] = []
        self._open_snapshots = 0

    @property
    def root(self) -> Hash32:
        assert not self._overlay, "root asked with unflushed writes"
        return self._trie.root_hash

    # raw key/value -------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        if key in self._overlay:
            return self._overlay[key]
        value = self._trie.get(trie_key(key))
        return value or None

    def set(self, key: bytes, value: bytes) -> None:
        assert value, "empty values are deletions; call delete()"
        self._write(key, value)

    def delete(self, key: bytes) -> None:
        self._write(key, None)

    def _write(self, key: bytes, value: bytes | None) -> None:
        if self._open_snapshots:
            self._journal.append((key, self._overlay.get(key, _ABSENT)))
        self._overlay[key] = value

    # journal ----------------------------------------------------------------------------
    def snapshot(self) -> int:
        self._open_snapshots += 1
        return len(self._journal)

    def revert(self, mark: int) -> None:
        while len(self._journal) > mark:
            key, previous = self._journal.pop()
            if previous is _ABSENT:
                del self._overlay[key]
            else:
                self._overlay[key] = previous  # type: ignore[assignment]
        self._close_snapshot()

    def commit(self, mark: int) -> None:
        """Keep the writes since `mark`; the journal entries stay until the outer level ends."""
        self._close_snapshot()

    def _close_snapshot(self) -> None:
        assert self._open_snapshots > 0, "no snapshot open"
        self._open_snapshots -= 1
        if self._open_snapshots == 0:
            self._journal.clear()

    def flush(self) -> Hash32:
        """Write the overlay into the trie (sorted: the root must not depend on the order
        writes happened in, and sorted inserts are deterministic across replicas)."""
        assert self._open_snapshots == 0, "flush with an open snapshot"
        with self._trie.squash_changes() as batch:
            for key in sorted(self._overlay):
                value = self._overlay[key]
                if value is None:
                    batch.delete(trie_key(key))
                else:
                    batch[trie_key(key)] = value
        self._overlay.clear()
        return self._trie.root_hash

    # accounts ---------------------------------------------------------------------------
    def account(self, address: Address) -> Account | None:
        data = self.get(account_key(address))
        return Account.decode(data) if data is not None else None

    def set_account(self, address: Address, account: Account) -> None:
        self.set(account_key(address), account.encode())

    def balance(self, address: Address) -> int:
        account = self.account(address)
        return account.balance if account else 0

    def add_balance(self, address: Address, amount: int) -> None:
        account = self.account(address) or Account(0, 0)
        assert account.balance + amount >= 0, "balance would go negative"
        self.set_account(address, Account(account.nonce, account.balance + amount))
