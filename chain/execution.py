"""The state transition (style habit 1): validate the header, apply every transaction,
run the end-of-block hooks, then compare each root with the header one by one.

`build` is the proposer's side of the same code (one apply loop, `_apply_body`, for both):
it applies candidate transactions, skips those that are invalid at this point (stale
nonce, unknown sender) and fills the header's roots in. Nothing here touches the store:
the result (block, receipts, new trie nodes) is persisted by the caller in one write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import rlp
from rlp.codec import encode_raw

from chain.epochs import epoch_at, read_epochs
from chain.errors import InvalidBlock, InvalidTransaction, TxReason
from chain.genesis import Genesis
from chain.state import Account, NodeOverlay, NodeSource, State
from chain.triebuild import DecodedNodes, ordered_root
from chain.types import EMPTY_TRIE_ROOT, Block, BlockHeader, Event, Receipt, Transaction
from chain.validation import SignatureCache, check_transaction
from chain.values import big_endian
from crypto import Hash32
from vm import BlockEnv, CallOutput, Engine, InternalError


@dataclass
class AppliedBody:
    """What applying a block body gave: the transactions taken, their receipts and then the
    end-of-block receipt, and the gas the transactions used."""

    included: list[Transaction]
    receipts: list[Receipt]
    gas_used: int


@dataclass(frozen=True)
class ExecutedBlock:
    block: Block
    receipts: tuple[Receipt, ...]  # one per transaction, then the end-of-block receipt
    nodes: dict[bytes, bytes]  # every trie node the block created


def ordered_trie_root(nodes: NodeOverlay, items: list[bytes]) -> Hash32:
    """Root of the trie mapping rlp(i) -> items[i] (transactions, receipts), built in one
    pass from the sorted keys; the nodes are those HexaryTrie would write."""
    if not items:
        return EMPTY_TRIE_ROOT
    return ordered_root(nodes, items)


# encode_receipt spells these layouts out: fail loudly if they change
assert Receipt._meta.field_names == ("status", "gas_used", "events", "error")
assert Event._meta.field_names == ("contract", "name", "fields")


def encode_receipt(receipt: Receipt) -> bytes:
    """rlp.encode(receipt), without pyrlp's field-by-field sedes walk (a tenth of the time;
    tested equal). Contracts make the events, so the fields have their sedes' types."""
    events = [[event.contract, event.name, event.fields] for event in receipt.events]
    return encode_raw([big_endian(receipt.status), big_endian(receipt.gas_used), events, receipt.error])


def make_receipt(output: CallOutput) -> Receipt:
    """The ledger's record of a call (execution-specs' make_receipt): the engine reports
    what the call did, the ledger decides how that is recorded and hashed."""
    return Receipt(int(output.succeeded), output.gas_used, output.events, output.error)


def apply_transaction(state: State, tx: Transaction, engine: Engine, env: BlockEnv,
                      block_gas_left: int) -> Receipt:
    """Stateful checks, nonce bump, then the call. Raises InvalidTransaction (the block is
    invalid) before any write; a reverted call gives a receipt with status 0 instead, and a
    bug in a contract raises InternalError (vm/errors.py): the block is not applied."""
    account = state.account(tx.sender_address)
    if account is None:
        raise InvalidTransaction(TxReason.UNKNOWN_SENDER, f"0x{tx.sender_address.hex()} has no account")
    if tx.nonce != account.nonce:
        raise InvalidTransaction(TxReason.NONCE_MISMATCH, f"expected {account.nonce}, got {tx.nonce}")
    if tx.gas_limit > block_gas_left:
        raise InvalidTransaction(TxReason.BLOCK_GAS, f"gas limit {tx.gas_limit} > {block_gas_left} left")
    state.set_account(tx.sender_address, Account(account.nonce + 1, account.balance))
    return make_receipt(engine.execute(state, tx, env))


class Executor:
    """Executes blocks for one chain: its genesis rules, its contracts, its signature cache."""

    def __init__(self, genesis: Genesis, engine: Engine, signatures: SignatureCache) -> None:
        self.genesis = genesis
        self.engine = engine
        self.signatures = signatures
        # decoded state trie nodes, shared by the blocks this executor runs: a block reads
        # mostly the nodes its parent wrote
        self.trie_nodes = DecodedNodes()

    def state_transition(self, parent: BlockHeader, block: Block,
                         source: NodeSource) -> ExecutedBlock:
        header = block.header
        nodes = NodeOverlay(source)
        state = State(nodes, parent.state_root, self.trie_nodes)
        env = _block_env(self.genesis.chain_id, header)
        self._check_header(parent, block, state, env)

        def invalid(index: int, tx: Transaction, exc: InvalidTransaction) -> None:
            raise InvalidBlock(f"transaction {index} invalid ({exc})") from exc

        body = self._apply_body(state, env, block.transactions, invalid)
        state_root = state.flush()
        tx_root = ordered_trie_root(nodes, [rlp.encode(tx) for tx in block.transactions])
        receipt_root = ordered_trie_root(nodes, [encode_receipt(r) for r in body.receipts])
        # expected = what executing the body gives, got = what the header claims
        _compare("gas_used", body.gas_used, header.gas_used)
        _compare("transaction_root", tx_root, header.transaction_root)
        _compare("receipt_root", receipt_root, header.receipt_root)
        _compare("state_root", state_root, header.state_root)
        return ExecutedBlock(block, tuple(body.receipts), nodes.written)

    def build(self, parent: BlockHeader, candidates: list[Transaction], source: NodeSource, *,
              timestamp_ms: int, proposer: int, view: int, full: Callable[[], bool] | None = None,
              ) -> tuple[ExecutedBlock, list[tuple[Transaction, InvalidTransaction]]]:
        """Make the next block from `candidates` (in order); return it and the rejects.

        `full` is the proposer's own policy (e.g. a time budget): once it says so, no more
        transactions are taken. Validity never depends on it, so chain/ stays clock-free."""
        limits = self.genesis.limits
        # Block time strictly increases, and follows the proposer's clock once that is ahead
        # of the parent: after a block dated in the future, chain time still advances.
        timestamp_ms = max(timestamp_ms, parent.timestamp_ms + 1)
        draft = BlockHeader(parent.hash, parent.number + 1, timestamp_ms, proposer, view,
                            EMPTY_TRIE_ROOT, EMPTY_TRIE_ROOT, EMPTY_TRIE_ROOT, 0, b"")
        nodes = NodeOverlay(source)
        state = State(nodes, parent.state_root, self.trie_nodes)
        rejected: list[tuple[Transaction, InvalidTransaction]] = []
        body_bytes = size = 0

        def fits(tx: Transaction, included: int) -> bool:
            nonlocal body_bytes, size
            size = len(rlp.encode(tx))
            if included == limits.block_txs_max or body_bytes + size > limits.block_bytes_max:
                return False
            if full is not None and included and full():
                return False
            body_bytes += size  # counted now, given back if the transaction is rejected
            return True

        def reject(index: int, tx: Transaction, exc: InvalidTransaction) -> None:
            nonlocal body_bytes
            body_bytes -= size  # the size fits() just counted, of this same transaction
            rejected.append((tx, exc))

        body = self._apply_body(state, _block_env(self.genesis.chain_id, draft), candidates, reject, fits)
        header = draft.copy(
            state_root=state.flush(),
            transaction_root=ordered_trie_root(nodes, [rlp.encode(tx) for tx in body.included]),
            receipt_root=ordered_trie_root(nodes, [encode_receipt(r) for r in body.receipts]),
            gas_used=body.gas_used,
        )
        block = Block(header, body.included, [])
        return ExecutedBlock(block, tuple(body.receipts), nodes.written), rejected

    def _apply_body(self, state: State, env: BlockEnv, txs: Sequence[Transaction],
                    invalid: Callable[[int, Transaction, InvalidTransaction], None],
                    fits: Callable[[Transaction, int], bool] | None = None) -> AppliedBody:
        """The one apply loop of the replica (`state_transition`) and the proposer (`build`):
        check and apply each transaction in order, then the end-of-block hooks. An invalid
        transaction goes to `invalid` (the replica raises, the proposer skips it); `fits`,
        the proposer's, stops the loop before a transaction that would overfill the block."""
        limits = self.genesis.limits
        body = AppliedBody([], [], 0)
        for index, tx in enumerate(txs):
            if fits is not None and not fits(tx, len(body.included)):
                break
            mark = state.snapshot()
            try:
                check_transaction(tx, self.genesis.chain_id, limits, self.signatures)
                receipt = apply_transaction(state, tx, self.engine, env, limits.block_gas_max - body.gas_used)
            except InvalidTransaction as exc:
                state.revert(mark)
                invalid(index, tx, exc)
                continue
            except InternalError as exc:
                state.revert(mark)
                if fits is None:
                    raise  # a replica: the block is not applied (vm/errors.py)
                # The proposer keeps the bug out of its block rather than die on it: anyone
                # can send the transaction that finds it, and every primary in turn would
                # (the node logs it with its traceback and counts it, issue 10).
                invalid(index, tx, _bug(exc))
                continue
            state.commit(mark)
            body.included.append(tx)
            body.receipts.append(receipt)
            body.gas_used += receipt.gas_used
        body.receipts.append(make_receipt(self.engine.end_block(state, env)))
        return body

    def _check_header(self, parent: BlockHeader, block: Block, state: State, env: BlockEnv) -> None:
        header = block.header
        limits = self.genesis.limits
        _compare("parent_hash", parent.hash, header.parent_hash)
        _compare("number", parent.number + 1, header.number)
        if header.timestamp_ms <= parent.timestamp_ms:
            raise InvalidBlock("timestamp not after parent", parent.timestamp_ms, header.timestamp_ms)
        # The set of this height, from the parent's state (chain/epochs.py: it knows it).
        bookkeepers = epoch_at(read_epochs(self.engine, state, env), header.number).n
        if header.proposer >= bookkeepers:
            raise InvalidBlock("proposer is not a bookkeeper", bookkeepers, header.proposer)
        if len(block.transactions) > limits.block_txs_max:
            raise InvalidBlock("too many transactions", limits.block_txs_max,
                               len(block.transactions))
        body_bytes = sum(len(rlp.encode(tx)) for tx in block.transactions)
        if body_bytes > limits.block_bytes_max:
            raise InvalidBlock("body too large", limits.block_bytes_max, body_bytes)


def _bug(exc: InternalError) -> InvalidTransaction:
    refused = InvalidTransaction(TxReason.INTERNAL_ERROR, str(exc))
    refused.__cause__ = exc
    return refused


def _block_env(chain_id: int, header: BlockHeader) -> BlockEnv:
    return BlockEnv(header.number, header.timestamp_ms, header.parent_hash, chain_id)


def _compare(what: str, expected: object, got: object) -> None:
    if expected != got:
        raise InvalidBlock(what, expected, got)
