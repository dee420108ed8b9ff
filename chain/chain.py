"""The ledger as one object: the final chain on disk, execution of candidate blocks on top
of its head, and the queries RPC needs. Only final blocks are ever appended (consensus/
decides finality); executing a candidate never touches the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import lmdb
import rlp
from trie import HexaryTrie
from trie.exceptions import MissingTrieNode

from chain.epochs import Epoch, epoch_at, read_activation_distance, read_epochs
from chain.errors import InvalidBlock, InvalidTransaction, UnknownBlock
from chain.execution import ExecutedBlock, Executor, ordered_trie_root
from chain.genesis import Genesis
from chain.state import Account, NodeOverlay, State
from chain.store import ChainStore
from chain.types import (
    EMPTY_TRIE_ROOT,
    ZERO_HASH,
    Block,
    BlockHeader,
    Receipt,
    Transaction,
    index_key,
)
from chain.validation import SignatureCache
from crypto import Hash32
from vm import BlockEnv, CallContext, Engine
from vm.context import GasMeter

EXECUTED_CACHE_MAX = 8


class GenesisMismatch(InvalidBlock):
    """The store holds a chain that started from another genesis."""


@dataclass(frozen=True)
class TxLocation:
    height: int
    index: int
    tx: Transaction
    receipt: Receipt


class Chain:
    def __init__(self, store: ChainStore, genesis: Genesis, engine: Engine) -> None:
        self.store = store
        self.genesis = genesis
        self.engine = engine
        self.signatures = SignatureCache()
        self.executor = Executor(genesis, engine, self.signatures)
        self._executed: OrderedDict[Hash32, ExecutedBlock] = OrderedDict()
        self._head_state: State | None = None
        self._head_state_root = b""
        self._epochs: tuple[Hash32, tuple[Epoch, ...]] | None = None  # (head hash, its schedule)
        self._activation_distance: int | None = None
        if store.head_height() is None:
            executed = self._genesis_block()
            store.append(executed.block, executed.nodes)
        stored = store.block(0)
        expected = self._genesis_block().block
        if stored.hash != expected.hash:
            raise GenesisMismatch("genesis hash", expected.hash, stored.hash)
        self.head = store.block(store.head_height() or 0)

    # genesis ------------------------------------------------------------------------------
    def _genesis_block(self) -> ExecutedBlock:
        nodes = NodeOverlay(None)
        state = State(nodes, HexaryTrie.BLANK_NODE_HASH)
        for address, balance in self.genesis.accounts:
            state.set_account(address, Account(0, balance))
        for bookkeeper in self.genesis.bookkeepers:
            if state.account(bookkeeper.address) is None:
                state.set_account(bookkeeper.address, Account(0, 0))
        env = BlockEnv(0, self.genesis.timestamp_ms, ZERO_HASH, self.genesis.chain_id)
        for address in sorted(self.engine.contracts):
            contract = self.engine.contracts[address]
            ctx = CallContext(self.engine, state, env, address, address, address, 0,
                              GasMeter(10**12))
            contract.genesis(ctx)
        receipt_root = ordered_trie_root(nodes, [])
        header = BlockHeader(ZERO_HASH, 0, self.genesis.timestamp_ms, 0, 0, state.flush(),
                             EMPTY_TRIE_ROOT, receipt_root, 0, self.genesis.digest())
        return ExecutedBlock(Block(header, [], []), (), nodes.written)

    # candidate blocks ---------------------------------------------------------------------
    def build(self, candidates: list[Transaction], *, timestamp_ms: int, proposer: int,
              view: int, full: Callable[[], bool] | None = None,
              ) -> tuple[ExecutedBlock, list[tuple[Transaction, InvalidTransaction]]]:
        executed, rejected = self.executor.build(self.head.header, candidates, self.store,
                                                 timestamp_ms=timestamp_ms, proposer=proposer,
                                                 view=view, full=full)
        self._remember(executed)
        return executed, rejected

    def execute(self, block: Block) -> ExecutedBlock:
        """Run the state transition of `block` on the head (cached by block hash)."""
        cached = self._executed.get(block.hash)
        if cached is not None:
            return cached
        executed = self.executor.state_transition(self.head.header, block, self.store)
        self._remember(executed)
        return executed

    def append(self, block: Block, also: Callable[[lmdb.Transaction], None] | None = None) -> ExecutedBlock:
        """Persist a final `block` (with its certificate) as the new head, atomically, with
        whatever `also` writes in the same transaction (ChainStore.append)."""
        executed = self.execute(block)
        self.store.append(block, executed.nodes, also)
        self.head = block
        self._executed.clear()
        return ExecutedBlock(block, executed.receipts, executed.nodes)

    def install_snapshot(self, block: Block) -> None:
        """Start this (fresh) chain at `block`, whose state a snapshot restore stored
        (chain.snapshot); block sync goes on from there."""
        self.store.install_snapshot(block)
        self.head = block
        self._executed.clear()

    def _remember(self, executed: ExecutedBlock) -> None:
        self._executed[executed.block.hash] = executed
        while len(self._executed) > EXECUTED_CACHE_MAX:
            self._executed.popitem(last=False)

    # queries ----------------------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.head.number

    def block(self, height: int) -> Block:
        return self.store.block(height)

    def block_by_hash(self, block_hash: Hash32) -> Block:
        return self.store.block(self.store.height_of(block_hash))

    def state(self, height: int | None = None) -> State:
        header = self.head.header if height is None else self.block(height).header
        return State(NodeOverlay(self.store), header.state_root, self.executor.trie_nodes)

    def head_state(self) -> State:
        """The head's state for reads only (admission checks, proposal candidates), kept
        until the head moves: a sender's account is walked down the trie once per block,
        not once per transaction (0.5 ms each, as much as a signature check, issue 10).
        Whoever may write (a view call, a block) takes `state()`, a fresh one."""
        if self._head_state is None or self._head_state_root != self.head.header.state_root:
            self._head_state = self.state()
            self._head_state_root = self.head.header.state_root
        return self._head_state

    def account(self, address: bytes) -> Account | None:
        return self.state().account(address)

    def transaction(self, tx_hash: Hash32) -> TxLocation:
        height, index = self.store.transaction_location(tx_hash)
        block = self.block(height)
        receipt = self.receipt_at(block.header, index)
        return TxLocation(height, index, block.transactions[index], receipt)

    def receipt_at(self, header: BlockHeader, index: int) -> Receipt:
        trie = HexaryTrie(NodeOverlay(self.store), header.receipt_root)
        try:
            raw = trie.get(index_key(index))
        except MissingTrieNode as exc:
            self.store.check_held(header.number)  # pruned while this read ran
            # else the base block of a node that joined by snapshot: it brought the state only
            raise UnknownBlock(f"the receipts of block {header.number} are not held here (the node joined "
                               f"by a snapshot at that height)") from exc
        if not raw:
            raise UnknownBlock(f"no receipt {index} in block {header.number}")
        return rlp.decode(raw, Receipt)

    def epochs(self) -> tuple[Epoch, ...]:
        """The bookkeeper schedule as of the head: the set of every stored block and of the
        next activation_distance heights (chain/epochs.py)."""
        if self._epochs is None or self._epochs[0] != self.head.hash:
            self._epochs = (self.head.hash, read_epochs(self.engine, self.state(), self.view_env()))
        return self._epochs[1]

    def activation_distance(self) -> int:
        """Blocks from a set change's acceptance to its first height (chain/epochs.py)."""
        if self._activation_distance is None:
            self._activation_distance = read_activation_distance(self.engine, self.state(), self.view_env())
        return self._activation_distance

    def epoch_at(self, height: int) -> Epoch:
        """The set that certifies `height` (up to head + activation_distance)."""
        return epoch_at(self.epochs(), height)

    def view_env(self) -> BlockEnv:
        header = self.head.header
        return BlockEnv(header.number, header.timestamp_ms, header.hash, self.genesis.chain_id)
