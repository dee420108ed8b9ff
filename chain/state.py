"""World state: accounts and contract storage over the state Merkle Patricia trie.

Writes go to an in-memory overlay with a journal (style habit 4): `snapshot()` marks a
point, `revert(mark)` undoes every write after it. `flush()` moves the overlay into the
trie once per block (architecture decision 4) and returns the new root; it may only run when
no snapshot is open. Trie keys are keccak256 of the logical key (a "secure trie", as in
Ethereum), so no caller can make the trie deep by choosing keys.

Reads and the flush go through `chain.triebuild` (one batch commit per block, decoded nodes
cached), which writes exactly the nodes `trie.HexaryTrie` would: proofs still come from
HexaryTrie over the same node store.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Protocol

from rlp.codec import decode_raw, encode_raw

from chain.triebuild import DecodedNodes, TrieBatch
from chain.values import big_endian
from crypto import Address, Hash32, keccak256

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
        if not isinstance(key, bytes):
            return False
        try:
            self[key]
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
        """rlp([nonce, balance]) as big-endian integers (what rlp.encode gives, without
        its sedes inference: this runs several times per transaction)."""
        return encode_raw([big_endian(self.nonce), big_endian(self.balance)])

    @classmethod
    def decode(cls, data: bytes) -> Account:
        nonce, balance = decode_raw(data, True, False)[0]
        return cls(int.from_bytes(nonce, "big"), int.from_bytes(balance, "big"))


class _Absent:
    """The journal's mark of a key the overlay did not hold (distinct from None: a delete)."""


_ABSENT = _Absent()


class State:
    def __init__(self, nodes: NodeOverlay, root: Hash32, cache: DecodedNodes | None = None) -> None:
        """`cache` may be shared by every State of one chain (nodes are content-addressed)."""
        self.nodes = nodes
        self._root = root
        self._trie = TrieBatch(nodes, cache if cache is not None else DecodedNodes())
        self._overlay: dict[bytes, bytes | None] = {}
        self._journal: list[tuple[bytes, bytes | None | _Absent]] = []
        self._open_snapshots = 0
        # per key: the trie path (hex of keccak256(key)) and the value last read or flushed
        self._paths: dict[bytes, bytes] = {}
        self._reads: dict[bytes, bytes | None] = {}
        self._accounts: dict[bytes, Account] = {}  # encoding -> account (immutable)

    @property
    def root(self) -> Hash32:
        assert not self._overlay, "root asked with unflushed writes"
        return self._root

    def _path(self, key: bytes) -> bytes:
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = trie_key(key)
        return path

    # raw key/value -------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        if key in self._overlay:
            return self._overlay[key]
        if key in self._reads:
            return self._reads[key]
        value = self._trie.get(self._root, self._path(key)) or None
        self._reads[key] = value
        return value

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
            if isinstance(previous, _Absent):
                del self._overlay[key]
            else:
                self._overlay[key] = previous
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
        """Write the overlay into the trie in one batch (sorted by trie key: the root must
        not depend on the order writes happened in)."""
        assert self._open_snapshots == 0, "flush with an open snapshot"
        overlay = self._overlay
        changes = sorted((self._path(key).hex(), value or b"") for key, value in overlay.items())
        self._root = self._trie.commit(self._root, changes)
        self._reads.update(overlay)
        overlay.clear()
        return self._root

    # accounts ---------------------------------------------------------------------------
    def account(self, address: Address) -> Account | None:
        data = self.get(account_key(address))
        if data is None:
            return None
        # a transfer reads each account several times: decode each encoding once
        account = self._accounts.get(data)
        if account is None:
            account = self._accounts[data] = Account.decode(data)
        return account

    def set_account(self, address: Address, account: Account) -> None:
        data = account.encode()
        self._accounts[data] = account
        self.set(account_key(address), data)

    def balance(self, address: Address) -> int:
        account = self.account(address)
        return account.balance if account else 0

    def add_balance(self, address: Address, amount: int) -> None:
        account = self.account(address) or Account(0, 0)
        assert account.balance + amount >= 0, "balance would go negative"
        self.set_account(address, Account(account.nonce, account.balance + amount))
