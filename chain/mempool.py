"""Pending transactions waiting for a block. Bounded in count and bytes; admission runs
every check a block would (stateless checks, known sender, nonce window) so that bad input
is refused at the door with a typed reason and changes nothing.

Order: by sender, consecutive nonces only, so a block never holds a nonce gap; senders take
turns (one transaction each per round, in arrival order of their oldest pending one), so a
sender with a thousand pending transactions delays only itself, never the next sender.

Quotas: every sender is bounded in count and bytes; senders that hold no tokens (a device
account costs nothing to register, so sending from one is free) share a small class quota,
so that any number of them flooding together can fill at most that share and funded
senders always find room.

Future transactions: one past a nonce gap of its sender (its predecessor is neither final
nor pending) can enter no block until the gap fills. Relayed copies arrive in any order,
and a pool refusing a gap's filler while full would otherwise fill with them for good:
seen at a 100,000 backlog, 20,000 pending, almost none executable, blocks of a handful and
views churning. They share a quota (as geth's "queued" beside its "pending" slots) below
the pool's own, so a full pool always holds at least txs_max - future_txs_max transactions
a block can take.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import rlp

from chain.errors import InvalidTransaction, TxReason
from chain.genesis import LedgerLimits
from chain.state import State
from chain.types import Transaction
from chain.validation import SignatureCache, check_transaction
from crypto import Address, Hash32


@dataclass(frozen=True)
class MempoolLimits:
    txs_max: int = 20_000  # pending transactions; above it tx_send answers mempool-full
    bytes_max: int = 64 << 20  # their total size
    nonce_gap_max: int = 64  # how far ahead of the account nonce a transaction may be
    per_sender_max: int = field(default=1_000, metadata={"min": 1})  # pending transactions of one sender
    per_sender_bytes_max: int = field(default=1 << 20, metadata={"min": 1})  # their bytes (64 of the largest)
    # a sender with a zero balance: its pending transactions (sending from one costs nothing)
    unfunded_sender_txs_max: int = field(default=16, metadata={"min": 1})
    unfunded_txs_max: int = field(default=2_000, metadata={"min": 1})  # all senders with a zero balance together
    unfunded_bytes_max: int = field(default=8 << 20, metadata={"min": 1})  # their bytes together
    # past a nonce gap of their sender (module docstring): below txs_max, so a full pool can fill blocks
    future_txs_max: int = field(default=4_000, metadata={"min": 1})
    future_bytes_max: int = field(default=16 << 20, metadata={"min": 1})  # their bytes together
    # a node this many blocks behind the highest final height t + 1 connected bookkeepers
    # announced refuses tx_send as "syncing": its nonces and balances are stale (a client asking it for
    # a pending nonce gets a used one, and the transaction is never final)
    behind_blocks_max: int = field(default=8, metadata={"min": 1})

    def __post_init__(self) -> None:
        if self.future_txs_max >= self.txs_max:
            raise ValueError("future_txs_max must be below txs_max (a full pool must hold what a block can take)")


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
        self._sender_bytes: dict[Address, int] = {}
        self._unfunded: set[Address] = set()  # senders admitted while their balance was 0
        self._unfunded_txs = 0
        self._unfunded_bytes = 0
        self._bytes = 0
        self._base: dict[Address, int] = {}  # the account nonce last read for each sender
        self._future: dict[Address, tuple[int, int]] = {}  # sender -> its future transactions (count, bytes)
        self._future_txs = 0
        self._future_bytes = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, tx_hash: Hash32) -> bool:
        return tx_hash in self._by_hash

    @property
    def future_count(self) -> int:
        """Pending transactions past a nonce gap of their sender (module docstring)."""
        return self._future_txs

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

    def check_room(self, size: int) -> None:
        """Raise MEMPOOL_FULL unless a transaction of `size` bytes fits: what a relayed copy
        is asked before it is decoded (a full pool refused every relayed copy only after
        decoding and checking it, and a backlog's copies come back while it stays full)."""
        if len(self._by_hash) >= self.limits.txs_max:
            raise InvalidTransaction(TxReason.MEMPOOL_FULL, f"{len(self)} transactions pending")
        if self._bytes + size > self.limits.bytes_max:
            raise InvalidTransaction(TxReason.MEMPOOL_FULL, f"{self._bytes} bytes pending")

    def add(self, tx: Transaction, state: State) -> None:
        """Admit `tx` or raise InvalidTransaction with the reason; nothing changes on failure."""
        if tx.hash in self._by_hash:
            raise InvalidTransaction(TxReason.DUPLICATE, f"0x{tx.hash.hex()} already pending")
        size = len(rlp.encode(tx))
        self.check_room(size)
        check_transaction(tx, self.chain_id, self.ledger_limits, self.signatures)
        account = state.account(tx.sender_address)
        if account is None:
            raise InvalidTransaction(TxReason.UNKNOWN_SENDER, f"0x{tx.sender_address.hex()} has no account")
        if tx.nonce < account.nonce:
            raise InvalidTransaction(TxReason.NONCE_REPLAY, f"nonce {tx.nonce} < account nonce {account.nonce}")
        if tx.nonce > account.nonce + self.limits.nonce_gap_max:
            raise InvalidTransaction(
                TxReason.NONCE_GAP, f"nonce {tx.nonce} > account nonce {account.nonce} + {self.limits.nonce_gap_max}"
            )
        pending = self._by_sender.get(tx.sender_address, {})
        if tx.nonce in pending:
            raise InvalidTransaction(TxReason.NONCE_TAKEN, f"nonce {tx.nonce} already pending for this sender")
        self._check_quotas(tx.sender_address, account.balance == 0, len(pending), size)
        if tx.nonce > self.next_nonce(tx.sender_address, account.nonce):
            self._check_future_quota(size)
        sender = tx.sender_address
        self._by_sender.setdefault(sender, {})[tx.nonce] = tx
        self._base[sender] = account.nonce
        self._by_hash[tx.hash] = tx
        self._bytes += size
        self._sender_bytes[sender] = self._sender_bytes.get(sender, 0) + size
        if account.balance == 0:
            self._unfunded.add(sender)
        if sender in self._unfunded:
            self._unfunded_txs += 1
            self._unfunded_bytes += size
        self._recount_future(sender)

    def _check_future_quota(self, size: int) -> None:
        limits = self.limits
        if self._future_txs >= limits.future_txs_max or self._future_bytes + size > limits.future_bytes_max:
            raise InvalidTransaction(TxReason.MEMPOOL_FULL, f"{self._future_txs} transactions ({self._future_bytes} "
                                                            "bytes) wait behind a nonce gap")

    def _recount_future(self, sender: Address) -> None:
        """Count again the sender's transactions past its first nonce gap: once per change
        to its pending set, O(its pending), which per_sender_max bounds."""
        old_count, old_bytes = self._future.pop(sender, (0, 0))
        count = size = 0
        pending = self._by_sender.get(sender)
        if pending:
            gap = self._base[sender]
            while gap in pending:
                gap += 1
            for nonce, tx in pending.items():
                if nonce > gap:
                    count += 1
                    size += len(rlp.encode(tx))
            if count:
                self._future[sender] = (count, size)
        self._future_txs += count - old_count
        self._future_bytes += size - old_bytes

    def _check_quotas(self, sender: Address, unfunded: bool, pending: int, size: int) -> None:
        limits = self.limits
        if pending >= limits.per_sender_max:
            raise InvalidTransaction(TxReason.SENDER_FULL, f"{pending} pending from this sender")
        if self._sender_bytes.get(sender, 0) + size > limits.per_sender_bytes_max:
            raise InvalidTransaction(TxReason.SENDER_FULL,
                                     f"{self._sender_bytes[sender]} bytes pending from this sender")
        if not (unfunded or sender in self._unfunded):
            return
        if pending >= limits.unfunded_sender_txs_max:
            raise InvalidTransaction(TxReason.SENDER_FULL, f"{pending} pending from a sender without balance")
        if self._unfunded_txs >= limits.unfunded_txs_max or self._unfunded_bytes + size > limits.unfunded_bytes_max:
            raise InvalidTransaction(TxReason.UNFUNDED_FULL, f"senders without balance hold {self._unfunded_txs} txs, "
                                                             f"{self._unfunded_bytes} bytes")

    def candidates(self, state: State, count_max: int) -> list[Transaction]:
        """Up to `count_max` transactions executable in order on `state`, senders taking
        turns: round k holds the k-th executable transaction of every sender that has one.

        Each sender starts at the account nonce last read for it (admission, or the final
        block that held its transactions), not at a fresh state read: reading every sender's
        account per proposal made a proposal cost the pool's size in trie walks, not the
        block's (2,500 senders at a 100,000 backlog: a tenth of the node's CPU, issue 10).
        That nonce can only be behind the state's; when the pool does not hold it, the
        state is read (the sender waits behind a gap, or its nonce moved without a block of
        this pool: a snapshot); a stale transaction it would pick is refused by the build
        and dropped."""
        queues: list[tuple[dict[int, Transaction], int]] = []
        for sender, pending in self._by_sender.items():
            nonce = self._base[sender]
            if nonce not in pending:
                account = state.account(sender)
                nonce = account.nonce if account else 0
            queues.append((pending, nonce))
        chosen: list[Transaction] = []
        while queues and len(chosen) < count_max:
            still: list[tuple[dict[int, Transaction], int]] = []
            for pending, nonce in queues:
                if nonce not in pending:
                    continue
                chosen.append(pending[nonce])
                if len(chosen) == count_max:
                    break
                still.append((pending, nonce + 1))
            queues = still
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
            if sender in self._by_sender and account is not None:
                self._base[sender] = account.nonce  # the gap may have moved with the block
            self._recount_future(sender)

    def remove(self, tx: Transaction) -> None:
        self._drop(tx)
        self._recount_future(tx.sender_address)  # its successors may now wait behind a gap

    def _drop(self, tx: Transaction) -> None:
        if self._by_hash.pop(tx.hash, None) is None:
            return
        size = len(rlp.encode(tx))
        sender = tx.sender_address
        self._bytes -= size
        self._sender_bytes[sender] -= size
        if sender in self._unfunded:
            self._unfunded_txs -= 1
            self._unfunded_bytes -= size
        pending = self._by_sender[sender]
        del pending[tx.nonce]
        if not pending:
            del self._by_sender[sender]
            del self._sender_bytes[sender]
            del self._base[sender]
            self._unfunded.discard(sender)
