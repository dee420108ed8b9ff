"""One gridchain node: the consensus loop and everything it drives.

Only the consensus loop mutates chain, mempool and consensus state (docs/architecture.md "How a
transaction flows"): p2p readers fill `network.inbound`, RPC handlers fill
`submissions`, both bounded; the loop drains them, feeds the XPaxos replica and block
sync, carries out their actions, and wakes up at the earliest timer deadline.

The bookkeeper set can change by governance (chain/epochs.py): when the next height belongs
to another set, the node takes that set's role (a new replica in view 0, or none for a
node whose key left the set), drops the consensus messages of other epochs (asking a peer
that is ahead for blocks), and ends its links with bookkeepers removed from the set.

A write that finds no space (StorageFull: the LMDB map cannot grow, or the disk is full)
pauses consensus instead of killing the node: nothing was written, RPC reads and /health
go on (503, with the cause), transactions are refused, and every `storage_retry_ms` the
node retries: it grows the map if it can and starts its replica again from what is
stored, as after a restart.

Joining by snapshot (`[sync] mode = "snapshot"` on a fresh store): until the state sync
(consensus/statesync.py) has restored a snapshot, the node follows no block and proposes
nothing (a bookkeeper's replica starts once the state is there), refuses transactions, and
only answers its peers; then block sync goes on from the snapshot's height. Every node
makes, keeps and serves snapshots and prunes old block bodies as `[snapshot]` says
(runtime/snapshots.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import lmdb
import rlp

from chain import ChainStore, DecodeError, InvalidTransaction, StorageFull, Transaction, TxReason, decode
from chain.chain import Chain
from chain.epochs import BOOKKEEPERS_MAX, Epoch
from chain.epochwalk import make_step, walk_steps
from chain.errors import NOT_NOW
from chain.execution import ExecutedBlock
from chain.journal import MempoolJournal
from chain.mempool import Mempool
from consensus import (
    Action,
    BlockSync,
    CatchUp,
    ConsensusConfig,
    FaultDetected,
    Finalize,
    InvalidMessage,
    LmdbStorage,
    Persist,
    Rejected,
    Replica,
    Send,
    Suspected,
    SyncAction,
    SyncRejected,
    SyncSend,
    ViewChanged,
    message_from_wire,
    sync_message_from_wire,
)
from consensus.admission import DecodeBudget, wire_refusal
from consensus.byzantine import replica_class
from consensus.errors import DecodeReason, RejectReason
from consensus.loop import settle
from consensus.messages import MESSAGE_TYPES, Suspect
from consensus.statesync import (
    OFFERS_MAX,
    STATESYNC_TYPES,
    NodesChecked,
    Offers,
    OffersRequest,
    Part,
    PartRefused,
    PartRequest,
    SnapshotAbandoned,
    SnapshotRestored,
    StateSync,
    StateSyncAction,
    StateSyncMessage,
    StateSyncSend,
    WalkChecked,
    statesync_message_from_wire,
)
from consensus.sync import SyncRequest, SyncResponse, SyncStatus
from contracts import build_contracts, load_genesis
from crypto import keccak256
from crypto.keystore import load_key, resolve_passphrase
from p2p import Network
from p2p.counters import PEER_ERROR
from rpc.server import RpcServer
from runtime import logfilter
from runtime.config import NodeConfig, check_limits
from runtime.descriptors import raise_descriptor_limit
from runtime.ledger_app import LedgerApp
from runtime.metrics import NodeMetrics, PeerRefusal
from runtime.snapshots import SnapshotFiles
from runtime.statecollect import StateCollector
from runtime.txrelay import (
    INV_HASHES_MAX,
    RELAY_TYPES,
    TX_BATCH_MAX,
    TX_GET,
    TX_INV,
    TXS,
    HashLru,
    Outgoing,
    TxRelay,
)
from vm import Engine

log = logging.getLogger("gridchain.node")

SYNC_TYPES = ("sync_status", "sync_request", "sync_response")
# Admission work per loop turn (decoding, signature and mempool checks of relayed or
# submitted transactions), in wall time, not in transactions: on a machine of any speed
# consensus messages and timers get a turn at least this often. A count (256 per turn)
# took 25 ms here and 0.5 s on a starved machine, where followers then looked stuck.
ADMIT_TURN_MS_MAX = 20
# The mempool journal is compacted once it holds this many entries beyond twice the mempool.
JOURNAL_SLACK = 1_000
# The `kind` label of gridchain_peer_message_errors_total: a message type, or "other".
PEER_MESSAGE_KINDS = frozenset((*MESSAGE_TYPES, *SYNC_TYPES, *STATESYNC_TYPES, *RELAY_TYPES))
FAULTS_KEPT_MAX = 64  # proven faults the node keeps for RPC consensus_faults (each a few hundred bytes)
BYZANTINE_HEAD_LEAD = 1_000  # test-only "withhold-commit": blocks its announced head lies ahead


@dataclass
class Submission:
    tx: Transaction
    done: asyncio.Future[None]


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


def _turn_deadline() -> float:
    return time.monotonic() + ADMIT_TURN_MS_MAX / 1000


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.genesis = load_genesis(config.genesis)
        check_limits(config, self.genesis)
        self.key = load_key(config.key_file, resolve_passphrase(str(config.key_file), config.key_passphrase_file))
        self.store = ChainStore(config.data_dir / "chain", config.lmdb_map_bytes, config.lmdb_map_bytes_max,
                                config.disk_free_bytes_min)
        self.storage_full: StorageFull | None = None  # consensus paused until there is space
        self.consensus_faults: list[dict[str, Any]] = []  # proven faulty bookkeepers (XFT §4.4), newest last
        self.chain = Chain(self.store, self.genesis, Engine(build_contracts(self.genesis.contract_params)))
        # The replica's Persist actions land here, and its Finalize records with their blocks
        # (opened once the store is known to be this chain's).
        self.consensus_storage = LmdbStorage(self.store.env)
        self.mempool = Mempool(self.genesis.chain_id, self.genesis.limits, config.mempool,
                               self.chain.signatures)
        self.consensus_config = ConsensusConfig(t=self.genesis.t, **config.consensus)
        # Bytes of blocks each peer may make this node decode, shared by the replica (its
        # consensus messages) and block sync (its answers): consensus/admission.py.
        self.decode_budget = DecodeBudget(self.consensus_config.decode_bytes_per_s,
                                          self.consensus_config.decode_burst_bytes)
        self.journal = MempoolJournal(self.store.env)
        self.app = LedgerApp(self.chain, self.mempool, self.consensus_storage, self.journal,
                             empty_blocks=self.consensus_config.empty_blocks, build_ms_max=config.block_build_ms_max)
        self.snapshots = SnapshotFiles(config.data_dir / "snapshots", config.snapshot)
        self.collector = StateCollector(self.store, config.snapshot.prune_nodes_per_write_max)
        self.state_sync: StateSync | None = None
        self._handed_over_at = -1  # the head height of the last _hand_over
        self._take_epoch(self.chain.epoch_at(self.chain.height + 1))
        if config.sync_mode == "snapshot" and self.chain.height == 0:
            # Joining by snapshot (only a fresh store has no state to start from): a
            # bookkeeper's replica starts once the state is there (_state_sync_over).
            self.state_sync = self._make_state_sync()
            self.replica = None
        self.sync = self._make_sync()
        self.network = Network(config.p2p, self.key, self.genesis.chain_id, self._allowed_peers(), config.p2p_host,
                               config.p2p_port, {p.public_key: (p.host, p.port) for p in config.peers},
                               on_peer_up=self._peer_up, on_peer_down=self._peer_down)
        self.peer_names = {p.public_key: p.name for p in config.peers}
        self.peer_heights: dict[bytes, int] = {}  # final heights peers announced
        self._traced_kinds: set[str] = set()  # peer message kinds whose error traceback was logged
        self.relay = TxRelay(config.relay, config.mempool.txs_max)
        # relayed transactions waiting for admission: (peer, hash, raw), bounded in count and
        # bytes (config.relay.backlog_*_max); hashes kept apart to drop copies undecoded
        self.backlog: deque[tuple[bytes, bytes, bytes]] = deque()
        self.backlog_hashes: set[bytes] = set()
        self.backlog_bytes = 0
        self.rejected_recent = HashLru(config.relay.rejected_recent_max)
        self.submissions: asyncio.Queue[Submission] = asyncio.Queue(config.rpc.submit_queue_max)
        self.metrics = NodeMetrics(config.name)
        self.metrics.epoch.set(self.epoch.start)
        logfilter.install()
        # tx hash -> when it was admitted here (monotonic seconds), for the commit latency
        self.pending_since: dict[bytes, float] = {}
        self.final_listeners: list[Callable[[ExecutedBlock], None]] = []
        self.app.on_final.append(self._on_final)
        self._next_status_ms = 0
        self._stopping = asyncio.Event()
        self.rpc = RpcServer(self, raise_descriptor_limit())

    def clock_ms(self) -> int:
        """This node's wall clock for block time (the replica reads no clock); shifted by the
        test-only `clock_offset_ms` in clock-skew fault scenarios."""
        return wall_clock_ms() + self.config.clock_offset_ms

    def _make_sync(self) -> BlockSync:
        return BlockSync(self.app, chain_id=self.genesis.chain_id, set_of=self.chain.epoch_at,
                         config=self.config.sync)

    def _make_state_sync(self) -> StateSync:
        # The genesis set is the trust anchor: the snapshot's own walk proves the set of its
        # height (chain/epochwalk.py), never the peers' word.
        return StateSync(chain_id=self.genesis.chain_id, genesis_set=self.chain.epochs()[0],
                         activation_distance=self.chain.activation_distance(), config=self.config.snapshot,
                         now_ms=monotonic_ms())

    def _make_replica(self) -> Replica:
        assert self.index is not None
        replica = replica_class(self.consensus_config.byzantine)  # the honest Replica unless a test mode
        return replica(self.consensus_config, index=self.index, key=self.key, bookkeepers=self.bookkeepers,
                       chain_id=self.genesis.chain_id, app=self.app, stored=self.consensus_storage.load(),
                       epoch=self.epoch.start, set_of=self.chain.epoch_at, decode_budget=self.decode_budget)

    # epochs -------------------------------------------------------------------------------
    def _take_epoch(self, epoch: Epoch) -> None:
        """Run as this node's part of `epoch`'s set: a replica if its key is in it."""
        self.epoch = epoch
        self.bookkeepers = list(epoch.keys)
        self.consensus_config = dataclasses.replace(self.consensus_config, t=epoch.t)
        self.index = self.bookkeepers.index(self.key.public_key) if self.key.public_key in self.bookkeepers else None
        # (while restoring a snapshot there is no state to take part with yet: _state_sync_over)
        self.replica = self._make_replica() if self.index is not None and self.state_sync is None else None

    def _follow_epoch(self) -> None:
        """Called whenever the final head may have moved: at an epoch boundary, switch."""
        if self.chain.height != self._handed_over_at:
            # At once, not on the next status tick: at a short activation_distance and a
            # fast chain the set switches (and the links end) within a second.
            self._handed_over_at = self.chain.height
            self._hand_over()
        epoch = self.chain.epoch_at(self.chain.height + 1)
        if epoch == self.epoch:
            return
        was = self.index
        self._take_epoch(epoch)
        self.metrics.epoch.set(epoch.start)
        log.info("bookkeeper set of height %d: n = %d, t = %d; this node %s", epoch.start, epoch.n, epoch.t,
                 f"is bookkeeper {self.index}" if self.index is not None else
                 "left it" if was is not None else "is an observer")
        # A removed bookkeeper is no longer asked and its links end (it may dial again and
        # is refused at the handshake).
        self.network.set_allowed_keys(self._allowed_peers())
        if self.replica is not None:
            self._apply(self.replica.start(monotonic_ms(), self.clock_ms()))

    def _leaving_at(self) -> int | None:
        """The first height of a scheduled set without this bookkeeper, if there is one."""
        if self.index is None:
            return None
        for epoch in self.chain.epochs():
            if epoch.start > self.epoch.start and self.key.public_key not in epoch.keys:
                return epoch.start
        return None

    def _left_at(self) -> int | None:
        """The first height of the set this node's key left (a former bookkeeper: every
        bookkeeper refuses its links, so nothing it admitted would ever get out)."""
        if self.index is not None:
            return None
        was_in = False
        for epoch in self.chain.epochs():
            if self.key.public_key in epoch.keys:
                was_in = True
            elif was_in and epoch.start <= self.epoch.start:
                return epoch.start
        return None

    def _hand_over(self) -> None:
        """A bookkeeper leaving the set hands its pending transactions to the set that stays
        while its links still stand (issue 16: none it accepted is stranded with it)."""
        leaving = self._leaving_at()
        if leaving is None:
            return
        staying = set(self.chain.epoch_at(leaving).keys)
        peers = [peer for peer in self.network.connected_peers() if peer in staying]
        pending = [(tx.hash, rlp.encode(tx)) for tx in self.mempool.pending()]
        handed = self.relay.hand_over(sorted(peers), pending)
        if handed:
            log.info("leaving the bookkeeper set at height %d: pending transactions handed to %d staying "
                     "bookkeepers", leaving, len(peers))
        self._send_relay(handed)

    def _allowed_peers(self) -> set[bytes]:
        """The current bookkeepers and the configured peers, but no former bookkeeper."""
        former = {key for epoch in self.chain.epochs() for key in epoch.keys} - set(self.bookkeepers)
        return set(self.bookkeepers) | ({peer.public_key for peer in self.config.peers} - former)

    # lifecycle ----------------------------------------------------------------------------
    async def run(self) -> None:
        await self.network.start()
        await self.rpc.start()
        log.info("node %s up: height %d, %s, p2p %s:%d", self.config.name, self.chain.height,
                 f"bookkeeper {self.index}" if self.index is not None else "observer",
                 self.config.p2p_host, self.network.listen_port)
        try:
            with self._storage_guard():
                self._reload_journal()
                if self.replica is not None:
                    self._apply(self.replica.start(monotonic_ms(), self.clock_ms()))
            await self._loop()
        finally:
            await self.rpc.stop()
            await self.network.stop()
            self.snapshots.close()
            self.collector.close()
            self.store.close()

    def stop(self) -> None:
        self._stopping.set()

    async def _loop(self) -> None:
        inbound_get = asyncio.ensure_future(self.network.inbound.get())
        submit_get = asyncio.ensure_future(self.submissions.get())
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                if self.storage_full is not None:
                    await self._wait_for_space(stop_wait)
                    continue
                # With relayed transactions waiting, only look for new input (timeout 0) before
                # admitting the next chunk: RPC handlers and consensus messages get their turn.
                timeout = 0 if self.backlog else self._seconds_to_deadline()
                done, _ = await asyncio.wait({inbound_get, submit_get, stop_wait}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                with self._storage_guard():
                    if inbound_get in done:
                        self._handle_peer_batch(inbound_get.result())
                        inbound_get = asyncio.ensure_future(self.network.inbound.get())
                        # Let the connections' writers send what that queued (a FINAL, a
                        # COMMIT) before a timer builds the next block.
                        await asyncio.sleep(0)
                    if submit_get in done:
                        self._handle_submissions(submit_get.result(), monotonic_ms())
                        submit_get = asyncio.ensure_future(self.submissions.get())
                    self._admit_backlog_chunk(monotonic_ms())
                    self._on_timers(monotonic_ms())
                    self._send_relay(self.relay.flush())
                self.metrics.observe_loop(self)
        finally:
            for task in (inbound_get, submit_get, stop_wait):
                task.cancel()

    @contextmanager
    def _storage_guard(self) -> Iterator[None]:
        """A write without space pauses consensus (see the module docstring); any other
        error still propagates."""
        try:
            yield
        except (StorageFull, lmdb.Error, OSError) as exc:
            full = self.store.storage_error(exc)
            if full is None:
                raise
            self.storage_full = full
            self.metrics.storage_full.set(1)
            log.error("storage full, consensus paused until there is space (RPC reads go on): %s", full)

    async def _wait_for_space(self, stop_wait: asyncio.Future[Literal[True]]) -> None:
        """Retry until the store has space, then start consensus again from what is stored."""
        await asyncio.wait({stop_wait}, timeout=self.config.storage_retry_ms / 1000)
        full = self.storage_full
        assert full is not None
        if full.reason == "map-full" and not self.store.grow():
            return
        if full.reason == "disk-full" and self.store.disk_free_bytes() < self.store.disk_free_bytes_min:
            return
        self.storage_full = None
        with self._storage_guard():
            # As after a restart: what is stored is the truth, in-memory state may be ahead.
            self.sync = self._make_sync()
            if self.state_sync is not None:
                # The chunk whose write failed was taken as stored: restore from the start
                # (the nodes stored already are written again, harmlessly).
                self.state_sync = self._make_state_sync()
                for peer in self.network.connected_peers():
                    self._apply_state_sync(self.state_sync.peer_up(peer, monotonic_ms()))
            self._take_epoch(self.chain.epoch_at(self.chain.height + 1))
            if self.replica is not None:
                self._apply(self.replica.start(monotonic_ms(), self.clock_ms()))
        if self.storage_full is None:
            self.metrics.storage_full.set(0)
            log.info("storage has space again (%s): consensus resumed", self.store.usage())

    def _seconds_to_deadline(self) -> float:
        deadlines = [self._next_status_ms, self.sync.next_deadline(),
                     self.state_sync.next_deadline() if self.state_sync is not None else None]
        if self.replica is not None:
            deadlines.append(self.replica.next_deadline())
        nearest = min(d for d in deadlines if d is not None)
        return max(0.0, (nearest - monotonic_ms()) / 1000)

    def _on_timers(self, now: int) -> None:
        if self.replica is not None:
            deadline = self.replica.next_deadline()
            if deadline is not None and now >= deadline:
                self._apply(self.replica.on_tick(now, self.clock_ms()))
        deadline = self.sync.next_deadline()
        if deadline is not None and now >= deadline:
            self._send_sync(self.sync.on_tick(now))
        deadline = self.state_sync.next_deadline() if self.state_sync is not None else None
        if self.state_sync is not None and deadline is not None and now >= deadline:
            self._apply_state_sync(self.state_sync.on_tick(now))
        if now >= self._next_status_ms:
            self._next_status_ms = now + self.config.status_interval_ms
            self._keep_snapshots()
            self._hand_over()
            self._announce_status()
            self._send_relay(self.relay.due_announcements(now, self.config.relay.reannounce_per_tick_max,
                                                          self.mempool.__contains__))
            if len(self.journal) > 2 * len(self.mempool) + JOURNAL_SLACK:
                self.journal.compact(self.mempool.__contains__)

    # input --------------------------------------------------------------------------------
    def _handle_peer_batch(self, first: tuple[bytes, dict[str, Any]]) -> None:
        """Drain the inbound queue: consensus and sync messages are handled now, relayed
        transactions wait in `backlog`. A PREPARE must not queue behind thousands of
        transactions to admit, or a loaded follower looks like a stuck one to the primary.
        Each message gets the time it is handled at: a block executed for one of them may
        take a second, and the replica's timers must not run on a clock left behind."""
        items = [first]
        while len(items) < self.config.p2p.inbound_queue_max and not self.network.inbound.empty():
            items.append(self.network.inbound.get_nowait())
        for peer, message in items:
            self._handle_guarded(peer, message, monotonic_ms())

    def _handle_guarded(self, peer: bytes, message: dict[str, Any], now: int) -> None:
        kind = message["type"]
        with self._peer_guard(peer, kind):
            if kind in RELAY_TYPES:
                self._handle_relay(peer, message, now)
            else:
                self._handle_peer_message(peer, message, now)

    @contextmanager
    def _peer_guard(self, peer: bytes, kind: str) -> Iterator[None]:
        """Nothing a peer sends gets past here (docs/consensus.md "A peer's error"): a
        malformed message is counted by reason and dropped; any other exception is a bug
        the message found: counted by kind, logged (with its traceback the first time for
        that kind), and the peer is disconnected. A full store is no peer's fault: it goes
        on to _storage_guard."""
        try:
            yield
        except InvalidMessage as exc:
            self.metrics.message_rejected(exc.reason)
            log.warning("rejected %s from %s: %s", kind, self.peer_name(peer), exc,
                        extra={"reason": str(exc.reason)})
        except (StorageFull, lmdb.Error, OSError):
            raise
        except Exception:  # noqa: BLE001 - see the docstring: the node outlives it
            label = kind if kind in PEER_MESSAGE_KINDS else "other"
            self.metrics.peer_message_errors.labels(kind=label).inc()
            first = label not in self._traced_kinds
            self._traced_kinds.add(label)
            log.warning("handling %s from %s raised; peer disconnected", label, self.peer_name(peer),
                        exc_info=first)
            self.network.disconnect(peer, PEER_ERROR)

    def _handle_relay(self, peer: bytes, message: dict[str, Any], now: int) -> None:
        """Transactions, inventories and requests from a peer: nothing here decodes a
        transaction; copies of what this node has are recognised by hash and dropped."""
        kind = message["type"]
        over_rate = self.relay.over_rate
        if kind == TXS:
            for raw in _byte_strings(message.get("raw"), "raw", TX_BATCH_MAX):
                self._queue_relayed(peer, raw)
        elif kind == TX_INV:
            self._send_relay(self.relay.wanted(peer, _hashes(message), self._has_transaction, now))
        elif kind == TX_GET:
            self._send_relay(self.relay.answer(peer, _hashes(message), self._pending_raw, now))
        if self.relay.over_rate > over_rate:
            self.metrics.message_rejected(PeerRefusal.RELAY_RATE, self.relay.over_rate - over_rate)

    def _has_transaction(self, tx_hash: bytes) -> bool:
        return (tx_hash in self.mempool or tx_hash in self.backlog_hashes or tx_hash in self.rejected_recent
                or self.store.has_transaction(tx_hash))

    def _pending_raw(self, tx_hash: bytes) -> bytes | None:
        tx = self.mempool.get(tx_hash)
        return rlp.encode(tx) if tx is not None else None

    def _queue_relayed(self, peer: bytes, raw: bytes) -> None:
        if len(raw) > self.genesis.limits.tx_bytes_max:
            # No block may hold it: refused before even hashing (a 4 MiB string costs ~10 ms).
            self.metrics.rejected_txs.labels(reason=TxReason.OVERSIZE).inc()
            return
        tx_hash = keccak256(raw)  # = Transaction.hash: strict rlp has one encoding per value
        self.relay.mark_held(peer, tx_hash)
        if self._has_transaction(tx_hash):
            self.metrics.relay_duplicates.inc()
            return
        limits = self.config.relay
        while self.backlog and (len(self.backlog) >= limits.backlog_txs_max
                                or self.backlog_bytes + len(raw) > limits.backlog_bytes_max):
            # Best effort: the oldest goes; its sender announces it again while it stays pending.
            self._pop_backlog()
            self.metrics.message_rejected(PeerRefusal.RELAY_BACKLOG_FULL)
        self.backlog.append((peer, tx_hash, raw))
        self.backlog_hashes.add(tx_hash)
        self.backlog_bytes += len(raw)

    def _pop_backlog(self) -> tuple[bytes, bytes, bytes]:
        peer, tx_hash, raw = self.backlog.popleft()
        self.backlog_hashes.discard(tx_hash)
        self.backlog_bytes -= len(raw)
        return peer, tx_hash, raw

    def _admit_backlog_chunk(self, now: int) -> None:
        admitted = False
        deadline = _turn_deadline()
        while self.backlog and time.monotonic() < deadline:
            peer, tx_hash, raw = self._pop_backlog()
            with self._peer_guard(peer, TXS):  # a relayed transaction is a peer's message too
                admitted |= self._admit_from_peer(peer, tx_hash, raw, now)
        if admitted and self.replica is not None:
            self._apply(self.replica.on_transactions(now, self.clock_ms()))

    def _handle_peer_message(self, peer: bytes, message: dict[str, Any], now: int) -> None:
        kind = message["type"]
        if kind in STATESYNC_TYPES:
            self._handle_state_sync(peer, statesync_message_from_wire(message), now)
            return
        if kind in SYNC_TYPES:
            if kind == SyncResponse.TYPE and self._refused(peer, kind, self._sync_refusal(peer, message, now)):
                return
            decoded_sync = sync_message_from_wire(message, BOOKKEEPERS_MAX)
            if isinstance(decoded_sync, SyncStatus) and not self.sync.penalized(peer, now):
                self.peer_heights[peer] = decoded_sync.height
            if self.state_sync is not None and not isinstance(decoded_sync, SyncRequest):
                return  # no block to follow before the snapshot's state is here
            height_before = self.chain.height
            sync_actions = self.sync.on_message(peer, decoded_sync, now)
            if isinstance(decoded_sync, SyncResponse) and not any(isinstance(a, SyncRejected) for a in sync_actions):
                # Blocks applied (or held already): the chain's own work, not the peer's to pay.
                self.decode_budget.give_back(peer, sum(map(len, decoded_sync.blocks)))
            self._send_sync(sync_actions)
            if self.chain.height != height_before:
                self._follow_epoch()
                if self.replica is not None:
                    self._apply(self.replica.on_tick(now, self.clock_ms()))  # react to blocks sync just finalized
            return
        epoch = message.get("epoch")
        if type(epoch) is int and epoch != self.epoch.start:
            # Another set's message: a straggler's (it catches up by sync), or one from a
            # set this node has not reached yet: fetch the blocks up to it.
            if epoch > self.epoch.start:
                self._send_sync(self.sync.request(peer, epoch - 1, now))
            return
        if self.state_sync is not None and peer in self.bookkeepers:
            return  # a bookkeeper restoring a snapshot has no state to take part with yet
        if peer not in self.bookkeepers or self.replica is None:
            raise InvalidMessage(DecodeReason.NOT_A_BOOKKEEPER, kind)
        assert self.index is not None, "a replica runs on a bookkeeper only"
        # Who may send this to us, read off the wire before any signature or block is looked at.
        if self._refused(peer, kind, wire_refusal(message, self.index, len(self.bookkeepers), self.epoch.t)):
            return
        decoded = message_from_wire(message, len(self.bookkeepers))
        sender = self.bookkeepers.index(peer)
        # SUSPECT is the one message replicas forward on behalf of its author (the
        # replica checks the author's signature); anything else must come from its author.
        if decoded.sender != sender and not isinstance(decoded, Suspect):
            raise InvalidMessage(DecodeReason.SENDER_MISMATCH, f"{decoded.sender} from bookkeeper {sender}")
        self._apply(self.replica.on_message(sender, decoded, now, self.clock_ms()))

    def _sync_refusal(self, peer: bytes, message: dict[str, Any], now: int) -> RejectReason | None:
        """Blocks this node did not ask `peer` for are not decoded; those it asked for are
        charged to the peer's decode budget first, and given back once applied
        (consensus/admission.py)."""
        if not self.sync.expects(peer):
            return RejectReason.UNSOLICITED
        blocks = message.get("blocks")
        size = sum(len(raw) for raw in blocks if isinstance(raw, bytes)) if isinstance(blocks, list) else 0
        return None if self.decode_budget.take(peer, size, now) else RejectReason.DECODE_BUDGET

    def _refused(self, peer: bytes, kind: str, reason: RejectReason | None) -> bool:
        """Count and log a message dropped before it was decoded; False when there is no reason."""
        if reason is None:
            return False
        self.metrics.message_rejected(reason)
        log.warning("dropped %s from %s undecoded: %s", kind, self.peer_name(peer), reason,
                    extra={"reason": str(reason)})
        return True

    def _admit_from_peer(self, peer: bytes, tx_hash: bytes, raw: bytes, now: int) -> bool:
        """Admit a transaction a peer sent; the relay pushes it on to the peers without it."""
        try:
            self.mempool.check_room(len(raw))  # strict rlp: len(raw) is the transaction's size
            tx = decode(raw, Transaction)
            self._admit(tx)
        except (DecodeError, InvalidTransaction) as exc:
            reason = exc.reason if isinstance(exc, InvalidTransaction) else TxReason.MALFORMED
            self.metrics.rejected_txs.labels(reason=reason).inc()
            if reason not in NOT_NOW:
                # Remembered, its copies are dropped by hash. Not a "not now": a transaction
                # refused while the pool was full must be taken when offered again, or this
                # node's pool keeps a nonce gap its sender's later transactions wait behind.
                self.rejected_recent.add(tx_hash)
            if reason not in (TxReason.DUPLICATE, TxReason.NONCE_REPLAY):
                log.info("transaction from %s rejected: %s", self.peer_name(peer), exc, extra={"reason": reason})
            return False
        self.relay.admitted(tx_hash, raw, now, origin=peer)
        return True

    def _handle_submissions(self, first: Submission, now: int) -> None:
        accepted: list[tuple[Submission, bytes]] = []
        deadline = _turn_deadline()
        submission: Submission | None = first
        while submission is not None:
            try:
                self._admit(submission.tx)
                accepted.append((submission, rlp.encode(submission.tx)))
            except InvalidTransaction as exc:
                self._refuse(submission, exc)
            # The rest waits in the queue for the next turn.
            more = not self.submissions.empty() and time.monotonic() < deadline
            submission = self.submissions.get_nowait() if more else None
        if not accepted:
            return
        try:
            # Durable before acknowledged: a restart of every node keeps these.
            self.journal.record((s.tx.hash, raw) for s, raw in accepted)
        except (lmdb.Error, OSError):
            # Not acknowledged, so not admitted; the storage guard above pauses the node.
            for submission, _ in accepted:
                self.mempool.remove(submission.tx)
                self._refuse(submission, InvalidTransaction(TxReason.STORAGE_FULL, "cannot journal the transaction"))
            raise
        for submission, raw in accepted:
            self.relay.admitted(submission.tx.hash, raw, now)
            if not submission.done.done():
                submission.done.set_result(None)
        if self.replica is not None:
            self._apply(self.replica.on_transactions(now, self.clock_ms()))

    def _refuse(self, submission: Submission, exc: InvalidTransaction) -> None:
        self.metrics.rejected_txs.labels(reason=exc.reason).inc()
        if exc.reason not in (TxReason.DUPLICATE, TxReason.NONCE_REPLAY):  # client retries, not mistakes
            log.info("transaction 0x%s from RPC rejected: %s", submission.tx.hash.hex(), exc,
                     extra={"reason": exc.reason})
        if not submission.done.done():
            submission.done.set_exception(exc)

    def _reload_journal(self) -> None:
        """Admit again what this node acknowledged before it stopped and is not final."""
        entries: list[Transaction] = []
        refused: list[bytes] = []
        for tx_hash, raw in self.journal.entries():
            try:
                entries.append(decode(raw, Transaction))
            except DecodeError:
                refused.append(tx_hash)
        now = monotonic_ms()
        for tx in sorted(entries, key=lambda tx: (tx.sender, tx.nonce)):
            try:
                self._admit(tx)
            except InvalidTransaction:
                refused.append(tx.hash)  # final meanwhile, or invalid now
                continue
            self.relay.admitted(tx.hash, rlp.encode(tx), now)
        self.journal.forget(refused)
        if entries:
            log.info("mempool journal: %d transactions admitted again, %d gone", len(entries) - len(refused),
                     len(refused))

    def _admit(self, tx: Transaction) -> None:
        if self.state_sync is not None:
            # Nonces and balances are not known before the snapshot's state is here.
            raise InvalidTransaction(TxReason.SYNCING, "restoring a state snapshot")
        if self.store.has_transaction(tx.hash):
            raise InvalidTransaction(TxReason.DUPLICATE, "already final")
        self.mempool.add(tx, self.chain.head_state())
        self.pending_since[tx.hash] = time.monotonic()
        if len(self.pending_since) > self.config.mempool.txs_max:  # entries of dropped transactions
            del self.pending_since[next(iter(self.pending_since))]

    async def submit(self, tx: Transaction) -> None:
        """Called by RPC handlers: queue `tx` for the loop and wait for its admission."""
        if self.storage_full is not None:
            raise InvalidTransaction(TxReason.STORAGE_FULL, str(self.storage_full))
        behind = self._vouched_height() - self.chain.height
        if behind > self.config.mempool.behind_blocks_max:
            # A node catching up (restarted, healed from a partition) admits against a state
            # its peers left long ago: seen in insider-bigblock, where clients asked a
            # restarted node for their pending nonce, got one already used, and waited out
            # their receipt timeouts for transactions no block could take.
            raise InvalidTransaction(TxReason.SYNCING, f"{behind} blocks behind its peers (catching up): "
                                                       "send to another node")
        leaving = self._leaving_at() or self._left_at()
        if leaving is not None:
            # Its links with the set end at the switch; what it took now might not get out.
            raise InvalidTransaction(TxReason.LEAVING, f"this node leaves (or left) the bookkeeper set at height "
                                                       f"{leaving}: send to another node")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self.submissions.put_nowait(Submission(tx, done))
        except asyncio.QueueFull as exc:
            log.warning("transaction 0x%s from RPC rejected: submission queue full", tx.hash.hex(),
                        extra={"reason": TxReason.NODE_BUSY})
            raise InvalidTransaction(TxReason.NODE_BUSY, "submission queue full") from exc
        await done

    # output -------------------------------------------------------------------------------
    def _apply(self, actions: list[Action]) -> None:
        """Carry out a replica's actions, then follow the bookkeeper set if the head moved
        into another epoch (after the sends: they are addressed in the old set's indexes).
        The ledger builds and executes the blocks it asks for first (`settle`: a Propose or
        a Check, its outcome handed back at once), so the votes that need them follow."""
        assert self.replica is not None, "actions come from this node's replica"
        actions = settle(self.replica, self.app, actions, monotonic_ms, self.clock_ms)
        for action in actions:
            if isinstance(action, Persist):
                self.consensus_storage.save(action.state)  # before the sends it guards
            elif isinstance(action, Send):
                self.network.send(self.bookkeepers[action.to], action.message.to_wire())
            elif isinstance(action, Finalize):
                self.app.finalize(action.block, action.state)  # block and record: one transaction
            elif isinstance(action, ViewChanged):
                self.metrics.view_changes.inc()
                log.info("view changed to %d (primary %s)", action.view, self._primary_name())
            elif isinstance(action, Suspected):
                self.metrics.suspects.inc()
                log.warning("suspected view %d: %s", action.view, action.reason)
            elif isinstance(action, Rejected):
                self.metrics.message_rejected(action.reason)
                log.warning("rejected message from bookkeeper %d: %s: %s", action.sender, action.reason,
                            action.detail, extra={"reason": str(action.reason)})
            elif isinstance(action, FaultDetected):
                self._record_fault(action)
            elif isinstance(action, CatchUp):
                self._send_sync(self.sync.request(self.bookkeepers[action.peer], action.height, monotonic_ms()))
        self._follow_epoch()

    def _record_fault(self, action: FaultDetected) -> None:
        """A bookkeeper proven faulty (XFT §4.4): kept for RPC `consensus_faults` (the newest
        FAULTS_KEPT_MAX), counted, and logged with what proves it."""
        notice = action.notice
        record = {"kind": notice.kind, "accused": notice.accused,
                  "accused_key": "0x" + self.bookkeepers[notice.accused].hex(), "epoch": notice.epoch,
                  "view": notice.view, "height": notice.height, "found_here": action.found_here,
                  "detected_view": self.replica.view if self.replica is not None else None,
                  "proof": {key: ("0x" + value.hex() if isinstance(value, bytes) else value)
                            for key, value in notice.to_wire().items() if key != "view_changes"}
                  | {"view_changes": len(notice.view_changes)}}
        self.consensus_faults.append(record)
        del self.consensus_faults[:-FAULTS_KEPT_MAX]
        self.metrics.consensus_faults.labels(kind=notice.kind, accused=str(notice.accused)).inc()
        evidence = f"its VIEW-CHANGE reports final head {notice.view_changes[0].final_height}, a certificate " \
            f"of view {notice.view} proves it held height {notice.height}" if notice.kind == "state-loss" else \
            f"it signed two blocks for view {notice.view}, height {notice.height}: 0x{notice.hash_a.hex()[:16]} " \
            f"and 0x{notice.hash_b.hex()[:16]}"
        log.error("bookkeeper %d (%s) is faulty: %s; %s; %s", notice.accused,
                  self.bookkeeper_name(notice.accused), notice.kind, evidence,
                  "detected here" if action.found_here else "proof forwarded and checked",
                  extra={"reason": f"fault-{notice.kind}"})

    def _send_relay(self, outgoing: Outgoing) -> None:
        for peer, message in outgoing:
            self.network.send(peer, message)

    def _announce_status(self) -> None:
        status = self.sync.status()
        if self.consensus_config.byzantine != "withhold-commit":
            self.network.broadcast(status.to_wire())
            return
        # Test-only (consensus.config.FORKING_MODES): hide from the bookkeepers, and claim a
        # head far ahead to the others, so that an observer catching up asks this node first
        # and is served its withheld block.
        lie = SyncStatus(status.height + BYZANTINE_HEAD_LEAD, status.block_hash).to_wire()
        for peer in self.network.connected_peers():
            if peer not in self.bookkeepers:
                self.network.send(peer, lie)

    def _send_sync(self, actions: list[SyncAction]) -> None:
        for action in actions:
            if isinstance(action, SyncSend):
                self.network.send(action.peer, action.message.to_wire())
                continue
            # Block sync penalizes the peer itself (not asked again for a while); its claimed
            # height no longer counts for /health either.
            self.peer_heights.pop(action.peer, None)
            self.metrics.bad_blocks.labels(reason=action.reason.value).inc()
            log.warning("refused block %d from %s (%s): %s", action.height, self.peer_name(action.peer),
                        action.reason.value, action.detail)

    # snapshots ----------------------------------------------------------------------------
    def _handle_state_sync(self, peer: bytes, message: StateSyncMessage, now: int) -> None:
        """Serve the snapshots this node holds; feed offers and parts to a restore."""
        if isinstance(message, OffersRequest):
            self.network.send(peer, Offers(tuple(self.snapshots.manifests()[:OFFERS_MAX])).to_wire())
        elif isinstance(message, PartRequest):
            data = self.snapshots.answer(peer, message.height, message.part, now)
            if data is None:  # over the peer's budget: dropped, counted
                self.metrics.message_rejected(PeerRefusal.SNAPSHOT_RATE)
                return
            self.network.send(peer, Part(message.height, message.part, data).to_wire())
        elif self.state_sync is not None:
            self._apply_state_sync(self.state_sync.on_message(peer, message, now))

    def _apply_state_sync(self, actions: list[StateSyncAction]) -> None:
        for action in actions:
            if isinstance(action, StateSyncSend):
                self.network.send(action.peer, action.message.to_wire())
            elif isinstance(action, NodesChecked):
                self.store.put_nodes(action.nodes)
            elif isinstance(action, WalkChecked):
                self.store.put_walk_steps(action.steps)
            elif isinstance(action, PartRefused):
                self.metrics.snapshot_parts_refused.labels(reason=action.reason).inc()
                log.warning("refused snapshot part %d of height %d from %s (%s): %s; peer disconnected",
                            action.part, action.height, self.peer_name(action.peer), action.reason, action.detail,
                            extra={"reason": action.reason})
                self.network.disconnect(action.peer, PEER_ERROR)
            elif isinstance(action, SnapshotRestored):
                self.chain.install_snapshot(action.block)
                log.info("state restored from the snapshot at height %d (state root 0x%s); following by block "
                         "sync", action.block.number, action.block.header.state_root.hex()[:16])
                self._state_sync_over()
            elif isinstance(action, SnapshotAbandoned):
                log.warning("joining by snapshot abandoned: %s; replaying the chain from genesis by block sync",
                            action.reason)
                self._state_sync_over()

    def _state_sync_over(self) -> None:
        self.state_sync = None
        # the snapshot's height may lie in a later epoch than genesis
        self._take_epoch(self.chain.epoch_at(self.chain.height + 1))
        self.network.set_allowed_keys(self._allowed_peers())
        if self.replica is not None:
            self._apply(self.replica.start(monotonic_ms(), self.clock_ms()))
        self._announce_status()
        for peer, height in self.peer_heights.items():  # the heights heard meanwhile
            self._send_sync(self.sync.request(peer, height, monotonic_ms()))

    def _keep_snapshots(self) -> None:
        """Take in finished snapshots, then prune block bodies down to the newest snapshot
        `keep_blocks` below the head (bounded per write)."""
        keep = self.config.snapshot.keep_blocks
        self.snapshots.collect(self.store.base_height(), self.chain.height - keep if keep else None)
        if not keep:
            return
        target = self.snapshots.newest_at_or_below(self.chain.height - keep)
        if target is not None and target > self.store.base_height():
            distance = self.chain.activation_distance()
            base = self.store.prune_below(target, self.config.snapshot.prune_blocks_per_write_max,
                                          lambda h: make_step(self.chain, h) if h % distance == 0 else None)
            log.debug("block bodies pruned below height %d", base)
        self._collect_states(caught_up=target is None or self.store.base_height() >= target)

    def _collect_states(self, *, caught_up: bool) -> None:
        """Old states go once the base rose (chain/prune.py): a mark off the loop, then one
        bounded sweep write per status tick. A mark starts only once the bodies' pruning
        reached its target (its roots are read from the blocks it would delete)."""
        if not self.config.snapshot.prune_states:
            return
        if not self.collector.running and caught_up and self.store.base_height() > self.collector.collected_base:
            self.collector.start(self.chain.height, [m.state_root for m in self.snapshots.manifests()])
        self.collector.step()

    def _on_final(self, executed: ExecutedBlock) -> None:
        block = executed.block
        now = time.monotonic()
        self.relay.left(tx.hash for tx in block.transactions)
        for tx in block.transactions:
            since = self.pending_since.pop(tx.hash, None)
            if since is not None:
                self.metrics.commit_latency.observe(now - since)
        self.metrics.committed_txs.inc(len(block.transactions))
        log.info("final block %d: %d txs, hash 0x%s, view %d", block.number, len(block.transactions),
                 block.hash.hex()[:16], block.certificate[0].view if block.certificate else -1)
        for listener in self.final_listeners:
            listener(executed)
        if self.snapshots.due(block.number):
            distance = self.chain.activation_distance()
            self.snapshots.make(block, self.store, lambda: self._walk_below(block.number, distance))

    def _walk_below(self, height: int, distance: int) -> Iterator[bytes]:
        """The schedule steps of a snapshot at `height`, read on the snapshot worker."""
        steps = walk_steps(self.chain, height, distance)
        while True:
            with self.store.reading():
                step = next(steps, None)
            if step is None:
                return
            yield step

    # status -------------------------------------------------------------------------------
    def _peer_up(self, peer: bytes) -> None:
        log.info("peer %s joined", self.peer_name(peer))
        if self.state_sync is not None:
            self._apply_state_sync(self.state_sync.peer_up(peer, monotonic_ms()))
        # Announce to the newcomer what is pending here: a transaction admitted while this
        # node had no peers (isolated, just restarted) would otherwise never leave it.
        self._send_relay(self.relay.peer_up(peer))

    def _peer_down(self, peer: bytes, reason: str) -> None:
        self.relay.peer_down(peer)
        self.snapshots.peer_down(peer)
        if self.state_sync is not None:
            self.state_sync.peer_down(peer)
        log.info("peer %s left: %s", self.peer_name(peer), reason)

    def peer_name(self, peer: bytes) -> str:
        return self.peer_names.get(peer, "0x" + peer.hex()[:12])

    def _primary_name(self) -> str | None:
        if self.replica is None:
            return None
        return self.bookkeeper_name(self.replica.status.primary)

    def bookkeeper_name(self, index: int) -> str:
        """A bookkeeper of the current set by its configured peer or genesis name (a key
        added by governance has no genesis name), else its key's first hex digits."""
        key = self.bookkeepers[index]
        names = {b.public_key: b.name for b in self.genesis.bookkeepers} | self.peer_names
        if key == self.key.public_key:
            return self.config.name
        return names.get(key, "0x" + key.hex()[:12])

    def is_synced(self) -> tuple[bool, str]:
        """For /health: connected to a quorum and not behind any peer we know of."""
        if self.storage_full is not None:
            return False, f"storage full: {self.storage_full}"
        if self.state_sync is not None:
            return False, "catching up"  # restoring a snapshot: chain_status says how far
        connected = len(self.network.connected_peers())
        if connected < self.epoch.t:
            return False, f"connected to {connected} peers, need at least {self.epoch.t}"
        behind = self.sync.status().height < self._best_known_height()
        return (False, "catching up") if behind else (True, "ok")

    def _vouched_height(self) -> int:
        """The highest final height that t + 1 connected bookkeepers announced: at least one
        of them is honest, so one lying bookkeeper's far-ahead claim cannot make this node
        refuse every client as `syncing`."""
        connected = set(self.network.connected_peers())
        claims = sorted((h for p, h in self.peer_heights.items() if p in connected and p in self.bookkeepers),
                        reverse=True)
        vouchers = self.epoch.t + 1
        return claims[vouchers - 1] if len(claims) >= vouchers else self.chain.height

    def _best_known_height(self) -> int:
        connected = set(self.network.connected_peers())
        return max([self.chain.height, *(h for p, h in self.peer_heights.items() if p in connected)])



def _byte_strings(value: object, field: str, count_max: int) -> list[bytes]:
    """A list of byte strings no longer than a sender following TxRelay ever makes: a
    longer one (a `tx_get` of 65,536 hashes, say) would make this node do and send far more
    than the message cost its author."""
    if not isinstance(value, list) or not all(isinstance(item, bytes) for item in value):
        raise InvalidMessage(DecodeReason.BAD_RELAY_MESSAGE, f"{field} is not a list of byte strings")
    if len(value) > count_max:
        raise InvalidMessage(DecodeReason.BAD_RELAY_MESSAGE,
                             f"{len(value)} {field} in one message, at most {count_max}")
    return value


def _hashes(message: dict[str, Any]) -> list[bytes]:
    hashes = _byte_strings(message.get("hashes"), "hashes", INV_HASHES_MAX)
    if any(len(h) != 32 for h in hashes):
        raise InvalidMessage(DecodeReason.BAD_RELAY_MESSAGE, "a hash is not 32 bytes")
    return hashes
