"""Expected rejections raised by the ledger (style habit 2).

Each carries data a caller can show; a broken invariant is an `assert`, not one of these.
"""

from __future__ import annotations

from enum import StrEnum


class LedgerError(Exception):
    """Base class of every expected ledger rejection."""


class DecodeError(LedgerError):
    """Bytes that do not decode to the declared type."""


class TxReason(StrEnum):
    """Why a transaction was refused (style habit 12): one set for the ledger, the node, the
    RPC reply's `reason`, the SDK and the benchmarks; metric labels are these values."""

    # anywhere (chain/validation.py): the transaction itself
    MALFORMED = "malformed"  # its bytes do not decode
    OVERSIZE = "oversize"  # above tx_bytes_max
    WRONG_CHAIN_ID = "wrong-chain-id"
    GAS_LIMIT = "gas-limit"  # above tx_gas_max
    BAD_SIGNATURE = "bad-signature"
    # against the state (chain/execution.py, chain/mempool.py)
    UNKNOWN_SENDER = "unknown-sender"  # the sender has no account
    NONCE_MISMATCH = "nonce-mismatch"  # in a block: not the account's next nonce
    BLOCK_GAS = "block-gas"  # above the gas the block has left
    NONCE_REPLAY = "nonce-replay"  # below the account nonce: already final
    NONCE_GAP = "nonce-gap"  # too far above the account nonce (nonce_gap_max)
    NONCE_TAKEN = "nonce-taken"  # another transaction with this nonce is pending
    DUPLICATE = "duplicate"  # this transaction is pending or final already
    # back-pressure (chain/mempool.py, runtime/node.py): try again later
    MEMPOOL_FULL = "mempool-full"
    SENDER_FULL = "sender-full"  # the sender's quota (per_sender_*, unfunded_sender_txs_max)
    UNFUNDED_FULL = "unfunded-full"  # the quota all senders without balance share
    NODE_BUSY = "node-busy"  # the node's submission queue is full
    STORAGE_FULL = "storage-full"  # the node cannot journal it (docs/architecture.md decision 3)
    SYNCING = "syncing"  # the node is restoring a state snapshot: it knows no nonce yet
    LEAVING = "leaving"  # a bookkeeper leaving the set at the next epoch: send to another node
    # a contract bug (vm.InternalError) met while building a block: kept out of it, logged loudly
    INTERNAL_ERROR = "internal-error"


# Refusals that say "not now" rather than "never": the same transaction may be admitted
# later (back-pressure, or a nonce gap that the chain's progress closes).
NOT_NOW = frozenset({TxReason.MEMPOOL_FULL, TxReason.SENDER_FULL, TxReason.UNFUNDED_FULL, TxReason.NODE_BUSY,
                     TxReason.STORAGE_FULL, TxReason.SYNCING, TxReason.NONCE_GAP})


class InvalidTransaction(LedgerError):
    """A transaction that may not enter a block: a `TxReason` and a free-text detail."""

    def __init__(self, reason: TxReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class InvalidBlock(LedgerError):
    """A block that fails the state transition; names the field and both values."""

    def __init__(self, what: str, expected: object = None, got: object = None) -> None:
        text = what if expected is None else f"{what}: expected {_show(expected)}, got {_show(got)}"
        super().__init__(text)
        self.what = what
        self.expected = expected
        self.got = got


class InvalidCertificate(LedgerError):
    """A commit certificate that does not prove finality of its block."""


class UnknownBlock(LedgerError):
    """A block, transaction or receipt that the store does not hold."""


class BlockPruned(UnknownBlock):
    """A block below the store's base height: its body was pruned, or the node joined by a
    snapshot at `base` and never held it."""

    def __init__(self, height: int, base: int) -> None:
        super().__init__(f"block {height} is not held here: this node keeps blocks from height {base} "
                         f"(pruned, or joined by a snapshot); ask an archive node")
        self.height = height
        self.base = base


def _show(value: object) -> str:
    return "0x" + value.hex() if isinstance(value, bytes) else repr(value)


class StorageFull(Exception):
    """A write found no space: the LMDB map is full and cannot grow (`map-full`), or the
    disk is (`disk-full`). Not a LedgerError: nothing is wrong with the block, and the node
    must not blame whoever sent it. Nothing was written; the write can be retried."""

    def __init__(self, reason: str, detail: str, map_bytes: int, used_bytes: int, disk_free_bytes: int) -> None:
        super().__init__(f"{reason}: {detail} (LMDB map {used_bytes >> 20} of {map_bytes >> 20} MiB used, "
                         f"{disk_free_bytes >> 20} MiB free on disk)")
        self.reason = reason
        self.detail = detail
        self.map_bytes = map_bytes
        self.used_bytes = used_bytes
        self.disk_free_bytes = disk_free_bytes
