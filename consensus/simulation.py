"""A deterministic simulated cluster for testing XPaxos: virtual time, seeded faults.

`FakeLedger` implements the Application with real `Block`s whose state root is
keccak(parent state root ‖ payloads), so `check` catches wrong roots, and it asserts the
global invariants on every finalize through a shared `FinalityOracle` (one block per
height across all replicas, hash linkage, a valid certificate and finality proof). `Simulation` runs n
replicas and their block sync over a network that is a priority queue of deliveries:
seeded delay, drop, duplication (hence reordering), per-direction partitions, crashes,
and restarts (a new Replica on the same storage and ledger), and per-replica wall clocks
(`clock_offsets`: skew against CLOCK_EPOCH_MS + virtual time). Every message crosses the
real wire codec (to_wire, msgpack, *_from_wire).
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack
import rlp

from chain import Block, BlockHeader, InvalidBlock
from chain.certificate import verify_finality
from chain.epochs import Epoch
from chain.types import EMPTY_TRIE_ROOT, ZERO_HASH
from consensus.actions import Action, CatchUp, FaultDetected, Finalize, Persist, Send, Suspected
from consensus.byzantine import replica_class
from consensus.config import FORKING_MODES, ConsensusConfig
from consensus.loop import settle
from consensus.messages import message_from_wire
from consensus.replica import Replica
from consensus.storage import MemoryStorage
from consensus.sync import BlockSync, SyncAction, SyncRejected, SyncSend, sync_message_from_wire
from crypto import Hash32, KeyPair, keccak256

CHAIN_ID = 7
BATCH_MAX = 16
STATUS_INTERVAL_MS = 500
CLOCK_EPOCH_MS = 1_700_000_000_000  # a correct replica's wall clock at virtual time 0


def genesis_block() -> Block:
    header = BlockHeader(ZERO_HASH, 0, 0, 0, 0, keccak256(b"genesis"), EMPTY_TRIE_ROOT,
                         EMPTY_TRIE_ROOT, 0, b"")
    return Block(header, [], [])


def state_root_after(parent_root: Hash32, extra: bytes) -> Hash32:
    return keccak256(parent_root + extra)


class FinalityOracle:
    """Sees every finalize of every replica: the cluster-wide safety invariants."""

    def __init__(self, bookkeepers: list[bytes], t: int) -> None:
        self.bookkeepers = bookkeepers
        self.t = t
        self.hashes: dict[int, Hash32] = {0: genesis_block().hash}

    def record(self, block: Block) -> None:
        assert len(block.certificate) == 1, f"final block {block.number} lacks a certificate"
        verify_finality(block.certificate[0], chain_id=CHAIN_ID, height=block.number,
                        block_hash=block.hash, bookkeepers=self.bookkeepers, t=self.t)
        known = self.hashes.setdefault(block.number, block.hash)
        assert known == block.hash, f"FORK at height {block.number}"


class FakeLedger:
    """The Application: an append-only list of final blocks and a mempool of payloads."""

    def __init__(self, oracle: FinalityOracle | None, empty_blocks: bool = False) -> None:
        """`oracle` None: the ledger of a replica in a FORKING_MODES mode, outside the
        invariants (it appends what the group never finalized)."""
        self.empty_blocks = empty_blocks
        self._oracle = oracle
        self.blocks: list[Block] = [genesis_block()]
        self.mempool: dict[bytes, None] = {}

    def final_height(self) -> int:
        return len(self.blocks) - 1

    def final_hash(self) -> bytes:
        return self.blocks[-1].hash

    def pending_transactions(self) -> int:
        return len(self.mempool)

    def propose(self, height: int, view: int, proposer: int, clock_ms: int,
                budget_ms: int | None = None) -> Block | None:
        assert height == self.final_height() + 1
        if not self.mempool and not self.empty_blocks:
            return None
        payloads = list(self.mempool)[:BATCH_MAX]
        extra = rlp.encode(payloads)
        parent = self.blocks[-1].header
        header = BlockHeader(parent.hash, height, max(parent.timestamp_ms + 1, clock_ms), proposer, view,
                             state_root_after(parent.state_root, extra), keccak256(extra),
                             EMPTY_TRIE_ROOT, 0, extra)
        return Block(header, [], [])

    def check(self, block: Block) -> None:
        parent = self.blocks[-1].header
        header = block.header
        if header.number != parent.number + 1:
            raise InvalidBlock("number", parent.number + 1, header.number)
        if header.parent_hash != parent.hash:
            raise InvalidBlock("parent_hash", parent.hash, header.parent_hash)
        if header.timestamp_ms <= parent.timestamp_ms:
            raise InvalidBlock("timestamp not after parent", parent.timestamp_ms, header.timestamp_ms)
        expected = state_root_after(parent.state_root, header.extra)
        if header.state_root != expected:
            raise InvalidBlock("state_root", expected, header.state_root)

    def finalize(self, block: Block) -> None:
        self.check(block)  # an honest ledger never appends what does not execute
        if self._oracle is not None:
            self._oracle.record(block)
        self.blocks.append(block)
        try:
            payloads = rlp.decode(block.header.extra)
        except rlp.exceptions.DecodingError:
            payloads = []
        for payload in payloads if isinstance(payloads, list) else []:
            self.mempool.pop(bytes(payload), None)

    def final_block(self, height: int) -> Block | None:
        return self.blocks[height] if 0 < height < len(self.blocks) else None


@dataclass
class SimNode:
    index: int
    key: KeyPair
    config: ConsensusConfig
    ledger: FakeLedger
    storage: MemoryStorage
    replica: Replica
    sync: BlockSync
    alive: bool = True
    suspicions: list[Suspected] = field(default_factory=list)
    faults: list[FaultDetected] = field(default_factory=list)
    sync_rejections: list[SyncRejected] = field(default_factory=list)


@dataclass(frozen=True)
class NetworkFaults:
    drop: float = 0.0
    duplicate: float = 0.0
    delay_ms: tuple[int, int] = (1, 10)


class Simulation:
    def __init__(self, *, t: int, seed: int, config: ConsensusConfig | None = None,
                 byzantine: dict[int, str] | None = None,
                 faults: NetworkFaults | None = None,
                 clock_offsets: dict[int, int] | None = None) -> None:
        self.t = t
        self.n = 2 * t + 1
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.faults = faults or NetworkFaults()
        self.clock_offsets = dict(clock_offsets or {})
        self.blocked: set[tuple[int, int]] = set()
        self._queue: list[tuple[int, int, int, int, Any]] = []
        self._seq = 0
        self._next_status = STATUS_INTERVAL_MS
        self._tx_counter = 0
        self.sent: Counter[str] = Counter()  # consensus messages sent, by type (what a round costs)
        keys = [KeyPair.from_seed(bytes([i + 1]) * 32) for i in range(self.n)]
        self.bookkeepers = [key.public_key for key in keys]
        self.oracle = FinalityOracle(self.bookkeepers, t)
        base = config or ConsensusConfig(t=t)
        self.nodes: list[SimNode] = []
        for i, key in enumerate(keys):
            node_config = replace(base, byzantine=(byzantine or {}).get(i))
            forking = node_config.byzantine in FORKING_MODES
            ledger = FakeLedger(None if forking else self.oracle, empty_blocks=base.empty_blocks)
            storage = MemoryStorage()
            self.nodes.append(SimNode(i, key, node_config, ledger, storage,
                                      self._replica(i, key, node_config, ledger, storage),
                                      self._sync(ledger)))
        for node in self.nodes:
            self._act(node, node.replica.start(0, self.clock_ms(node.index)))

    def _replica(self, index: int, key: KeyPair, config: ConsensusConfig, ledger: FakeLedger,
                 storage: MemoryStorage) -> Replica:
        return replica_class(config.byzantine)(config, index=index, key=key, bookkeepers=self.bookkeepers,
                       chain_id=CHAIN_ID, app=ledger, stored=storage.load())

    def _sync(self, ledger: FakeLedger) -> BlockSync:
        epoch = Epoch(1, tuple(self.bookkeepers), self.t)
        return BlockSync(ledger, chain_id=CHAIN_ID, set_of=lambda height: epoch)

    def clock_ms(self, index: int) -> int:
        """Replica `index`'s wall clock now."""
        return CLOCK_EPOCH_MS + self.now + self.clock_offsets.get(index, 0)

    # ------------------------------------------------------------------ faults

    def crash(self, index: int) -> None:
        self.nodes[index].alive = False

    def restart(self, index: int) -> None:
        """A new Replica (and sync) on the same storage and ledger: a kill -9 and restart."""
        node = self.nodes[index]
        node.replica = self._replica(index, node.key, node.config, node.ledger, node.storage)
        node.sync = self._sync(node.ledger)
        node.alive = True
        self._act(node, node.replica.start(self.now, self.clock_ms(index)))

    def cut(self, src: int, dst: int) -> None:
        self.blocked.add((src, dst))

    def isolate(self, index: int) -> None:
        for other in range(self.n):
            if other != index:
                self.blocked |= {(index, other), (other, index)}

    def heal(self) -> None:
        self.blocked.clear()
        self.faults = NetworkFaults(delay_ms=self.faults.delay_ms)

    # ------------------------------------------------------------------ workload

    def submit(self, count: int) -> None:
        """Gossip `count` new transactions to every bookkeeper's mempool."""
        for _ in range(count):
            self._tx_counter += 1
            payload = b"tx-%d" % self._tx_counter
            for node in self.nodes:
                node.ledger.mempool[payload] = None
        for node in self.nodes:
            if node.alive:
                self._act(node, node.replica.on_transactions(self.now, self.clock_ms(node.index)))

    @property
    def submitted(self) -> int:
        return self._tx_counter

    # ------------------------------------------------------------------ the loop

    def run_until(self, end_ms: int) -> None:
        while True:
            node_time, node = self._next_node_deadline()
            queue_time = self._queue[0][0] if self._queue else None
            candidates = [time for time in (node_time, queue_time, self._next_status)
                          if time is not None]
            next_time = min(candidates)
            if next_time > end_ms:
                self.now = end_ms
                return
            self.now = max(self.now, next_time)
            if queue_time is not None and queue_time == next_time:
                self._deliver(heapq.heappop(self._queue))
            elif node_time == next_time and node is not None:
                self._tick(node)
            else:
                self._announce_status()

    def _next_node_deadline(self) -> tuple[int | None, SimNode | None]:
        best: tuple[int | None, SimNode | None] = (None, None)
        for node in self.nodes:
            if not node.alive:
                continue
            for deadline in (node.replica.next_deadline(), node.sync.next_deadline()):
                if deadline is not None:
                    deadline = max(deadline, self.now)
                    if best[0] is None or deadline < best[0]:
                        best = (deadline, node)
        return best

    def _tick(self, node: SimNode) -> None:
        self._act(node, node.replica.on_tick(self.now, self.clock_ms(node.index)))
        self._sync_sends(node, node.sync.on_tick(self.now))
        again = node.replica.next_deadline()
        if again is not None and again <= self.now:
            # A replica may ask for one more tick at once (after proposing, its stall clock
            # restarts with the fresh time of the next tick); a second would spin the loop.
            self._act(node, node.replica.on_tick(self.now, self.clock_ms(node.index)))
        # A deadline that did not move would spin the loop: that is a replica bug.
        for deadline in (node.replica.next_deadline(), node.sync.next_deadline()):
            assert deadline is None or deadline > self.now, \
                f"seed {self.seed}: node {node.index} deadline {deadline} stuck at {self.now}"

    def _announce_status(self) -> None:
        self._next_status = self.now + STATUS_INTERVAL_MS
        for node in self.nodes:
            if node.alive:
                status = node.sync.status()
                for other in range(self.n):
                    if other != node.index:
                        self._transmit(node.index, other, ("sync", status.to_wire()))

    def settled(self, index: int, actions: list[Action]) -> list[Action]:
        """Replica `index`'s output with the application's turn taken (its Propose or
        Check carried out on its ledger and the outcome fed back, consensus/loop.py), as
        the node takes it: what is left to carry out. Tests read it to see what a replica
        asks for."""
        node = self.nodes[index]
        return settle(node.replica, node.ledger, actions, lambda: self.now,
                      lambda: self.clock_ms(index))

    def _act(self, node: SimNode, actions: list[Action]) -> None:
        for action in self.settled(node.index, actions):
            if isinstance(action, Persist):
                node.storage.save(action.state)
            elif isinstance(action, Finalize):
                # In memory, so no crash can fall between the two (the node writes them in
                # one store transaction).
                node.ledger.finalize(action.block)
                node.storage.save(action.state)
            elif isinstance(action, Send):
                self.sent[action.message.TYPE] += 1
                self._transmit(node.index, action.to, ("xpaxos", action.message.to_wire()))
            elif isinstance(action, CatchUp):
                self._sync_sends(node, node.sync.request(bytes([action.peer]), action.height,
                                                         self.now))
            elif isinstance(action, Suspected):
                node.suspicions.append(action)
            elif isinstance(action, FaultDetected):
                node.faults.append(action)

    def _sync_sends(self, node: SimNode, sends: list[SyncAction]) -> None:
        for send in sends:
            if isinstance(send, SyncSend):
                self._transmit(node.index, send.peer[0], ("sync", send.message.to_wire()))
            else:
                node.sync_rejections.append(send)

    def _transmit(self, src: int, dst: int, payload: tuple[str, dict[str, Any]]) -> None:
        if (src, dst) in self.blocked or self.rng.random() < self.faults.drop:
            return
        copies = 2 if self.rng.random() < self.faults.duplicate else 1
        data = msgpack.packb(payload[1], use_bin_type=True)
        for _ in range(copies):
            delay = self.rng.randint(*self.faults.delay_ms)
            self._seq += 1
            heapq.heappush(self._queue, (self.now + delay, self._seq, src, dst,
                                         (payload[0], data)))

    def inject(self, src: int, dst: int, wire: dict[str, Any]) -> None:
        """Deliver `wire` from bookkeeper `src` to `dst` now, as if it had arrived: through
        msgpack and the strict decoders (InvalidMessage propagates), then the replica or
        block sync, whose actions are carried out. For crafted messages (faults/craft.py)."""
        kind = "sync" if str(wire.get("type", "")).startswith("sync_") else "xpaxos"
        self._deliver((self.now, 0, src, dst, (kind, msgpack.packb(wire, use_bin_type=True))))

    def _deliver(self, item: tuple[int, int, int, int, Any]) -> None:
        _, _, src, dst, (kind, data) = item
        node = self.nodes[dst]
        if not node.alive or (src, dst) in self.blocked:
            return
        wire = msgpack.unpackb(data, raw=False)
        if kind == "xpaxos":
            self._act(node, node.replica.on_message(src, message_from_wire(wire, self.n), self.now,
                                                    self.clock_ms(dst)))
        else:
            sends = node.sync.on_message(bytes([src]), sync_message_from_wire(wire, self.n), self.now)
            self._sync_sends(node, sends)
            # Sync may have moved the final head: let the replica react now.
            self._act(node, node.replica.on_tick(self.now, self.clock_ms(dst)))

    # ------------------------------------------------------------------ checks

    def final_heights(self) -> list[int]:
        return [node.ledger.final_height() for node in self.nodes]

    def check_consistency(self) -> None:
        """Equal blocks and state roots at equal heights on every ledger (but forking ones)."""
        ledgers = [node.ledger for node in self.nodes if node.config.byzantine not in FORKING_MODES]
        for ledger in ledgers:
            for block in ledger.blocks:
                assert self.oracle.hashes[block.number] == block.hash, \
                    f"seed {self.seed}: a ledger differs at {block.number}"
        for height in range(1, min(ledger.final_height() for ledger in ledgers) + 1):
            roots = {ledger.blocks[height].header.state_root for ledger in ledgers}
            assert len(roots) == 1, f"seed {self.seed}: state roots differ at {height}"

    def all_done(self, nodes: list[int] | None = None) -> bool:
        """Every submitted transaction final on the given (default: all) nodes."""
        chosen = [self.nodes[i] for i in (nodes if nodes is not None else range(self.n))]
        return all(not node.ledger.mempool for node in chosen) and \
            len({node.ledger.final_height() for node in chosen}) == 1
