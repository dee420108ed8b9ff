"""Pending transactions waiting for a block. Bounded in count and bytes; admission runs
every check a block would (stateless checks, known sender, nonce window) so that bad input
is refused at the door with a typed reason and changes nothing.

Order: by sender, consecutive nonces only, senders served in arrival order of their oldest
pending transaction, so a block never holds a nonce gap.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import rlp

from chain.errors import InvalidTransaction
from chain.genesis import LedgerLimits
from chain.state import State
from chain.types import Transaction
from chain.validation import SignatureCache, check_transaction
from crypto.hashing import Hash32
from crypto.keys import Address


@dataclass(frozen=True)
class MempoolLimits:
    txs_max: int = 20_000  # pending transactions; above it tx_send answers mempool-full
    bytes_max: int = 64 << 20  # their total size
    nonce_gap_max: int = 64  # how far ahead of the account nonce a transaction may be
    per_sender_max: int = 1_000  # pending transactions of one sender


class Mempool:
    def __init__(self, chain_id: int, ledger_limits: LedgerLimits, limits: MempoolLimits,
                 signatures: SignatureCache) -> None:
        self.chain_id = chain_id
        self.ledger_limits = ledger_limits
        self.limits = limits
        self.signatures = signatures
        self._by_hash: dict[Hash32, Transaction] = {}
        # sender -> nonce -> tx; OrderedDict keeps senders in arrival order
        self._by_sender: OrderedDict[Address, dict[int, Transaction]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, tx_hash: Hash32) -> bool:
        return tx_hash in self._by_hash

    def pending(self) -> list[Transaction]:
        """Every pending transaction, senders in arrival order, each sender's by nonce."""
        return [pending[nonce] for pending in self._by_sender.values() for nonce in sorted(pending)]

    def get(self, tx_hash: Hash32) -> Transaction | None:
        return self._by_hash.get(tx_hash)

    def next_nonce(self, sender: Address, account_nonce: int) -> int:
        """The nonce a new transaction of `sender` should carry, counting pending ones."""
        pending = self._by_sender.get(sender, {})
        nonce = account_nonce
        while nonce in pending:
            nonce += 1
        return nonce

    def add(self, tx: Transaction, state: State) -> None:
        """Admit `tx` or raise InvalidTransaction with the reason; nothing changes on failure."""
        if tx.hash in self._by_hash:
            raise InvalidTransaction("duplicate", f"0x{tx.hash.hex()} already pending")
        size = len(rlp.encode(tx))
        if len(self._by_hash) >= self.limits.txs_max:
            raise InvalidTransaction("mempool-full", f"{len(self)} transactions pending")
        if self._bytes + size > self.limits.bytes_max:
            raise InvalidTransaction("mempool-full", f"{self._bytes} bytes pending")
        check_transaction(tx, self.chain_id, self.ledger_limits, self.signatures)
        account = state.account(tx.sender_address)
        if account is None:
            raise InvalidTransaction("unknown-sender", f"0x{tx.sender_address.hex()} has no account")
        if tx.nonce < account.nonce:
            raise InvalidTransaction("nonce-replay", f"nonce {tx.nonce} < account nonce {account.nonce}")
        if tx.nonce > account.nonce + self.limits.nonce_gap_max:
            raise InvalidTransaction(
                "nonce-gap", f"nonce {tx.nonce} > account nonce {account.nonce} + {self.limits.nonce_gap_max}"
            )
        pending = self._by_sender.get(tx.sender_address, {})
        if tx.nonce in pending:
            raise InvalidTransaction("nonce-taken", f"nonce {tx.nonce} already pending for this sender")
        if len(pending) >= self.limits.per_sender_max:
            raise InvalidTransaction("sender-full", f"{len(pending)} pending from this sender")
        self._by_sender.setdefault(tx.sender_address, {})[tx.nonce] = tx
        self._by_hash[tx.hash] = tx
        self._bytes += size

    def candidates(self, state: State, count_max: int) -> list[Transaction]:
        """Up to `count_max` transactions executable in order on `state`."""
        chosen: list[Transaction] = []
        for sender, pending in self._by_sender.items():
            account = state.account(sender)
            nonce = account.nonce if account else 0
            while nonce in pending and len(chosen) < count_max:
                chosen.append(pending[nonce])
                nonce += 1
            if len(chosen) >= count_max:
                break
        return chosen

    def remove_committed(self, txs: list[Transaction], state: State) -> None:
        """Drop included transactions and any now stale by nonce."""
        senders = {tx.sender_address for tx in txs}
        for tx in txs:
            self._drop(tx)
        for sender in sorted(senders):
            account = state.account(sender)
            for tx in [t for n, t in self._by_sender.get(sender, {}).items()
                       if account is not None and n < account.nonce]:
                self._drop(tx)

    def remove(self, tx: Transaction) -> None:
        self._drop(tx)

    def _drop(self, tx: Transaction) -> None:
        if self._by_hash.pop(tx.hash, None) is None:
            return
        self._bytes -= len(rlp.encode(tx))
        pending = self._by_sender[tx.sender_address]
        del pending[tx.nonce]
        if not pending:
            del self._by_sender[tx.sender_address]
