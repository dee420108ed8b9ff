"""What the RPC server reads from the node it serves: the ledger, the pool and the store,
consensus and peer status, the metrics it counts into, and the one write it makes
(`submit`). rpc/ depends on this interface, not on runtime.Node, so the node (runtime/)
sits above the API it serves and the package graph reads one way (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from chain import ChainStore, StorageFull, StorageUsage, Transaction
from chain.chain import Chain
from chain.epochs import Epoch
from chain.execution import ExecutedBlock
from chain.genesis import Genesis
from chain.mempool import Mempool
from chain.snapshot import SnapshotManifest
from consensus import ConsensusConfig, Replica
from consensus.statesync import SnapshotConfig, StateSync
from crypto import KeyPair
from p2p import Network
from rpc.config import RpcConfig


class PeerSettings(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def public_key(self) -> bytes: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


class NodeSettings(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def p2p_host(self) -> str: ...
    @property
    def peers(self) -> Sequence[PeerSettings]: ...
    @property
    def rpc(self) -> RpcConfig: ...
    @property
    def snapshot(self) -> SnapshotConfig: ...


class SnapshotsServed(Protocol):
    def manifests(self) -> list[SnapshotManifest]: ...  # newest first


class RpcMetrics(Protocol):
    @property
    def rpc_requests(self) -> Counter: ...
    @property
    def rpc_connections(self) -> Gauge: ...
    @property
    def rpc_connections_closed(self) -> Counter: ...
    def observe_loop(self, node: Any) -> None: ...  # the node's own gauges, at each scrape
    def observe_storage(self, usage: StorageUsage) -> None: ...
    def render(self) -> bytes: ...
    async def watch_loop_stalls(self) -> None: ...


class NodeView(Protocol):
    @property
    def config(self) -> NodeSettings: ...
    @property
    def consensus_config(self) -> ConsensusConfig: ...
    @property
    def genesis(self) -> Genesis: ...
    @property
    def chain(self) -> Chain: ...
    @property
    def mempool(self) -> Mempool: ...
    @property
    def store(self) -> ChainStore: ...
    @property
    def storage_full(self) -> StorageFull | None: ...
    @property
    def metrics(self) -> RpcMetrics: ...
    @property
    def key(self) -> KeyPair: ...
    @property
    def index(self) -> int | None: ...  # its bookkeeper index, None for an observer
    @property
    def replica(self) -> Replica | None: ...
    @property
    def bookkeepers(self) -> list[bytes]: ...  # node keys of the set in force for the next block
    @property
    def epoch(self) -> Epoch: ...  # that set (governance, chain/epochs.py)
    @property
    def consensus_faults(self) -> list[dict[str, Any]]: ...  # proven faulty bookkeepers (XFT §4.4)
    def bookkeeper_name(self, index: int) -> str: ...
    @property
    def network(self) -> Network: ...
    @property
    def snapshots(self) -> SnapshotsServed: ...
    @property
    def state_sync(self) -> StateSync | None: ...  # while joining by snapshot
    @property
    def peer_heights(self) -> dict[bytes, int]: ...
    @property
    def final_listeners(self) -> list[Callable[[ExecutedBlock], None]]: ...
    def is_synced(self) -> tuple[bool, str]: ...
    def peer_name(self, peer: bytes) -> str: ...
    async def submit(self, tx: Transaction) -> None: ...
