"""Keeps the index level with the chain: after each final block (poked by the node, or by a
newHeads subscription when standalone) and every `poll_ms` anyway, it reads the blocks it
lacks from the source and appends them, `batch_blocks_max` per SQLite transaction. SQLite
work runs on the explorer's own writer thread, never on the node's loop.

The index is rebuilt from block 0 when it belongs to another chain or schema, or when the
block it holds at its height is not the chain's (a wiped node, a different cluster on the
same port): the chain is the source of truth.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from chain import Transaction, decode
from client import ClientError, RpcCallError, from_hex
from explorer.index import Index, IndexedBlock
from explorer.source import ChainSource
from rpc.encoding import transaction_json
from rpc.errors import BLOCK_PRUNED, NOT_FOUND

log = logging.getLogger("gridchain.explorer")
BATCH_BLOCKS_MAX = 64  # blocks read and written per SQLite transaction during a catch-up
# between two batches of a catch-up: a node rebuilding its index of a long chain leaves its
# loop to consensus most of the time (each block's JSON is encoded on that loop)
CATCH_UP_PAUSE_MS = 20
POLL_MS = 2_000  # catch up at least this often even without a poke (a lost notification)
WAIT_MS_MAX = 10_000  # the longest a page's request waits for a block to be indexed


class Indexer:
    def __init__(self, path: Path, source: ChainSource, poll_ms: int = POLL_MS) -> None:
        self.path = path
        self.source = source
        self.poll_ms = poll_ms
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="explorer-index")
        self._index: Index | None = None  # opened on the writer thread at first use, used there only
        self._poke = asyncio.Event()
        self._indexed = asyncio.Condition()
        self._caught_up = asyncio.Event()  # set once the first catch-up reached the chain's height
        self.height = -1
        self.contract_names: dict[str, str] = {}
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Follow the chain from now on (once: later calls do nothing)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def load(self) -> None:
        """Serve the index as it is, without following the chain (an archived copy)."""
        await self._advance(await self._on_writer(Index.height))
        self._caught_up.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._index is not None:
            await self._on_writer(Index.close)
        self._writer.shutdown(wait=True)

    def poke(self, *_: Any) -> None:
        """A block became final (a node's final listener or a newHeads notification)."""
        self._poke.set()

    async def wait_for(self, height: int, wait_ms: int) -> bool:
        """True once block `height` is indexed, False after `wait_ms` (at most WAIT_MS_MAX)."""
        async with self._indexed:
            try:
                async with asyncio.timeout(min(wait_ms, WAIT_MS_MAX) / 1000):
                    await self._indexed.wait_for(lambda: self.height >= height)
            except TimeoutError:
                return False
        return True

    async def wait_caught_up(self, wait_ms: int) -> bool:
        """True once the index has reached the height the chain had when it started
        following; False after `wait_ms`."""
        try:
            async with asyncio.timeout(wait_ms / 1000):
                await self._caught_up.wait()
        except TimeoutError:
            return False
        return True

    async def _on_writer(self, work: Any, *args: Any) -> Any:
        """`work(index, *args)` on the writer thread."""
        def run() -> Any:
            if self._index is None:
                self._index = Index(self.path)
            return work(self._index, *args)

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def _run(self) -> None:
        while True:
            try:
                await self.catch_up()
                self.last_error = None
                self._caught_up.set()
            except ClientError as exc:  # the node is down or refused: try again next round
                if self.last_error != str(exc):
                    log.warning("explorer index behind: %s", exc)
                self.last_error = str(exc)
            self._poke.clear()
            try:
                async with asyncio.timeout(self.poll_ms / 1000):
                    await self._poke.wait()
            except TimeoutError:
                pass

    async def catch_up(self) -> None:
        status = await self.source.call("chain_status")
        if not self.contract_names:
            contracts = await self.source.call("contract_list")
            self.contract_names = {c["address"]: c["name"] for c in contracts}
        await self._check_identity(status["chainId"])
        while self.height < status["height"]:
            first = self.height + 1
            last = min(status["height"], first + BATCH_BLOCKS_MAX - 1)
            fetched = await self._fetch_held(first, last)
            if fetched:
                await self._on_writer(self._add, fetched)
            await self._advance(last)
            if self.height < status["height"]:
                await asyncio.sleep(CATCH_UP_PAUSE_MS / 1000)

    async def _fetch_held(self, first: int, last: int) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """Blocks first..last the node holds. A node that pruned old blocks, or joined by a
        snapshot, keeps them from its base height (chain_getBlock 0 always answers): the
        index then holds the genesis block and the blocks from the base on."""
        fetched = []
        number = first
        while number <= last:
            try:
                fetched.append(await self._fetch(number))
                number += 1
            except RpcCallError as exc:
                if exc.code == BLOCK_PRUNED:
                    number = max(number + 1, int(exc.data["baseHeight"]))
                elif exc.code == NOT_FOUND:  # the base block of a snapshot: its receipts never came here
                    number += 1
                else:
                    raise
        return fetched

    async def _check_identity(self, chain_id: int) -> None:
        genesis = await self.source.call("chain_getBlock", 0)
        height = await self._on_writer(Index.height)
        held = await self._on_writer(Index.block_hash, height) if height >= 0 else None
        matches = await self._on_writer(Index.matches, chain_id, genesis["hash"])
        if matches and height >= 0:
            try:
                chain_block = await self.source.call("chain_getBlock", height)
                matches = chain_block is not None and chain_block["hash"] == held
            except RpcCallError as exc:  # pruned since: nothing to compare, the genesis matched
                if exc.code != BLOCK_PRUNED:
                    raise
        if not matches:
            if height >= 0:
                log.warning("explorer index %s does not match the chain: rebuilt from block 0", self.path)
            await self._on_writer(Index.reset, chain_id, genesis["hash"])
            height = -1
        await self._advance(height)

    async def _advance(self, height: int) -> None:
        async with self._indexed:
            self.height = height
            self._indexed.notify_all()

    async def _fetch(self, number: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        block = await self.source.call("chain_getBlock", number, True)
        receipts = await self.source.call("chain_getBlockReceipts", number)
        assert block is not None and receipts is not None, f"block {number} is final: the node has it"
        return block, receipts

    def _add(self, index: Index, fetched: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
        """On the writer thread: the raw transactions decoded (ms per thousand: not on the
        node's loop), then one SQLite transaction."""
        blocks = []
        for block, receipts in fetched:
            transactions = [transaction_json(decode(from_hex(raw), Transaction))
                            for raw in block["transactions"]]
            blocks.append(IndexedBlock({**block, "transactions": [tx["hash"] for tx in transactions]},
                                       transactions, receipts))
        index.add(blocks, self.contract_names)
