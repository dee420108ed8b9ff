"""Network: the node's peer-to-peer transport over asyncio TCP.

It listens for peers, dials the configured ones (reconnecting with capped exponential
backoff), authenticates and (by default) encrypts every connection (p2p/handshake.py,
p2p/secure.py), keeps exactly one live
connection per peer, and moves messages:

- `send` and `broadcast` never wait: each peer has a bounded send queue, and a
  message that does not fit is dropped and counted (consensus retransmits what matters);
- every message received goes, as (peer_id, message), onto one bounded `inbound` queue that
  the node's consensus loop drains. Readers never call into node state; when the queue is
  full they stop reading, so TCP pushes back on the senders.

When two nodes dial each other at once, both keep the connection dialled by the smaller
public key and close the other, so both ends agree without talking about it. A new
connection dialled by the same side as the existing one replaces it: the peer restarted,
and the old one is dead but not yet noticed. The dial loop of the larger key waits one
minimum backoff before its first dial so that, at a common start, the smaller key's dial
usually lands first and no duplicate is made at all.

Peer joins, departures and refusals are logged, one line each, on "gridchain.p2p".
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, SupportsIndex

from crypto import KeyPair
from p2p.admission import HandshakeSlots, Pending
from p2p.config import P2PConfig
from p2p.connection import Connection
from p2p.counters import BUSY, DUPLICATE, EVICTED, IO_ERROR, REVOKED, STOPPED, P2PCounters
from p2p.errors import P2PError, ProtocolViolation
from p2p.framing import FrameDecoder, Message, encode_frame
from p2p.handshake import handshake

log = logging.getLogger("gridchain.p2p")

# Message types starting with this are the transport's own and never reach the node.
RESERVED_PREFIX = "p2p."

PeerId = bytes
Address = tuple[str, int]
PeerUp = Callable[[PeerId], None]
PeerDown = Callable[[PeerId, str], None]


def short(peer_id: PeerId) -> str:
    return peer_id.hex()[:12]


class Network:
    """The transport of one node. Construct, `await start()`, drain `inbound`, and
    `await stop()`; every other method is synchronous and never waits."""

    def __init__(
        self,
        config: P2PConfig,
        key: KeyPair,
        chain_id: int,
        allowed_keys: Iterable[PeerId],
        listen_host: str,
        listen_port: int,
        peers: Mapping[PeerId, Address],
        on_peer_up: PeerUp | None = None,
        on_peer_down: PeerDown | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.chain_id = chain_id
        self.listen_host = listen_host
        # The bound port once started (0 asks the OS for a free one).
        self.listen_port = listen_port
        self.counters = P2PCounters()
        self.inbound: asyncio.Queue[tuple[PeerId, Message]] = asyncio.Queue(
            config.inbound_queue_max
        )
        self._allowed = frozenset(allowed_keys)
        # Dial targets. The node may pass every bookkeeper's address, its own included.
        self._peers = {peer_id: addr for peer_id, addr in peers.items() if peer_id != key.public_key}
        self._on_peer_up = on_peer_up
        self._on_peer_down = on_peer_down
        self._connections: dict[PeerId, Connection] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._handshakes = HandshakeSlots(config.pending_handshakes_max, config.pending_handshakes_per_host_max)
        self._peers_changed = asyncio.Event()
        self._stopping = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        assert self._server is None, "Network.start called twice"
        loop = asyncio.get_running_loop()

        def accepted() -> asyncio.StreamReaderProtocol:  # asyncio.start_server, with our reader
            return asyncio.StreamReaderProtocol(ListeningReader(), self._accept)

        self._server = await loop.create_server(accepted, self.listen_host, self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        log.info("listening on %s:%d as %s", self.listen_host, self.listen_port,
                 short(self.key.public_key))
        for peer_id, address in self._peers.items():
            self._spawn(self._dial_loop(peer_id, address))

    async def stop(self) -> None:
        """Close the listener, every connection and every dial loop; wait for them."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.close(STOPPED)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- sending -----------------------------------------------------------------------

    def send(self, peer_id: PeerId, message: Message) -> bool:
        """Queue `message` for `peer_id`; False if the peer is not connected or its queue
        is full (then the message is dropped and counted)."""
        connection = self._connections.get(peer_id)
        if connection is None:
            self.counters.sends_no_peer += 1
            return False
        return self._queue_frame(connection, self._encode(message))

    def broadcast(self, message: Message, exclude: Iterable[PeerId] = ()) -> int:
        """Queue `message` for every connected peer not in `exclude`; how many took it."""
        return self._fan_out(self._encode(message), frozenset(exclude))

    def _encode(self, message: Message) -> bytes:
        assert not message["type"].startswith(RESERVED_PREFIX), message["type"]
        return encode_frame(message, self.config.frame_bytes_max)

    def _fan_out(self, frame: bytes, exclude: frozenset[PeerId]) -> int:
        sent = 0
        for peer_id, connection in self._connections.items():
            if peer_id not in exclude:
                sent += self._queue_frame(connection, frame)
        return sent

    def _queue_frame(self, connection: Connection, frame: bytes) -> bool:
        if connection.send(frame):
            return True
        self.counters.sends_dropped += 1
        return False

    # --- peers ---------------------------------------------------------------------------

    def connected_peers(self) -> list[PeerId]:
        return list(self._connections)

    def peer_addresses(self) -> dict[PeerId, Address]:
        """Connected peers' remote host and announced listen port (for logs and admin RPC)."""
        return {
            peer_id: (connection.remote_host, connection.listen_port)
            for peer_id, connection in self._connections.items()
        }

    def disconnect(self, peer_id: PeerId, reason: str) -> bool:
        """Close the connection to `peer_id` now (a p2p/counters.py reason); it may dial
        again after its backoff. False when it was not connected."""
        connection = self._connections.get(peer_id)
        if connection is None:
            return False
        connection.close(reason)
        return True

    def set_allowed_keys(self, keys: Iterable[PeerId]) -> None:
        """Replace the allowed set (e.g. an observer was registered or removed); connected
        peers no longer in it are disconnected."""
        self._allowed = frozenset(keys)
        for peer_id, connection in list(self._connections.items()):
            if peer_id not in self._allowed:
                connection.close(REVOKED)

    async def wait_connected(self, peer_ids: Iterable[PeerId]) -> None:
        """Return once every one of `peer_ids` is connected (wrap in a timeout)."""
        wanted = frozenset(peer_ids)
        while not wanted <= self._connections.keys():
            await self._peers_changed.wait()

    def _notify_peers_changed(self) -> None:
        self._peers_changed.set()
        self._peers_changed = asyncio.Event()

    # --- connections -------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A task of our own, not the server's callback task, so that stop() can cancel it
        # (asyncio 3.11 logs a spurious error when a cancelled callback task ends).
        if self._stopping:
            writer.transport.abort()
            self.counters.count_disconnect(STOPPED)
            return
        peername = writer.get_extra_info("peername")
        assert isinstance(reader, ListeningReader)
        slot, evicted = self._handshakes.admit(str(peername[0]) if peername else "?", writer.transport,
                                               lambda: reader.bytes_received > 0)
        self._evict(evicted)
        if slot is None:
            writer.transport.abort()
            self._refused(f"from {_remote(writer)}", BUSY, "every handshake slot is claimed")
            return
        # Taken here, released by _serve when the handshake ends.
        self._spawn(self._serve(reader, writer, dialled_peer=None, slot=slot))

    def _evict(self, evicted: list[Pending]) -> None:
        for pending in evicted:
            pending.transport.abort()  # its _serve sees the abort and counts it as evicted

    async def _dial_loop(self, peer_id: PeerId, address: Address) -> None:
        config = self.config
        backoff_ms = config.reconnect_backoff_ms_min
        if peer_id < self.key.public_key:
            await asyncio.sleep(config.reconnect_backoff_ms_min / 1000)
        while True:
            while peer_id in self._connections:
                await self._peers_changed.wait()
            self.counters.dials += 1
            try:
                async with asyncio.timeout(config.dial_timeout_ms / 1000):
                    reader, writer = await asyncio.open_connection(*address)
            except OSError as exc:  # TimeoutError included
                self.counters.dial_failures += 1
                log.debug("dial %s at %s:%d failed: %s", short(peer_id), *address, exc)
            else:
                if await self._serve(reader, writer, dialled_peer=peer_id):
                    backoff_ms = config.reconnect_backoff_ms_min
            # Jitter keeps peers that failed together from retrying in lockstep.
            await asyncio.sleep(backoff_ms / 1000 * random.uniform(0.5, 1.0))
            backoff_ms = min(backoff_ms * 2, config.reconnect_backoff_ms_max)

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        dialled_peer: PeerId | None,
        slot: Pending | None = None,
    ) -> bool:
        """Authenticate a fresh connection, then serve it until it closes.

        `dialled_peer` is the peer we dialled, or None for an inbound connection, which
        holds a handshake `slot`. Returns whether the handshake succeeded.
        """
        remote = _remote(writer)
        if dialled_peer is None:
            where = f"from {remote}"
        else:
            where = f"to {short(dialled_peer)} at {remote}"
        config = self.config
        decoder = FrameDecoder(config.handshake_frame_bytes_max, config.frame_container_len_max)
        try:
            identity, sealer = await handshake(
                reader, writer, decoder, self.key, self.chain_id, self.listen_port,
                # Read at handshake time, so set_allowed_keys applies to the next one.
                lambda k: k in self._allowed and dialled_peer in (None, k),
                config,
                on_hello=None if slot is None else lambda k: self._evict(self._handshakes.claim(slot, k)),
            )
        except (P2PError, OSError) as exc:
            writer.transport.abort()
            if slot is not None and slot.evicted:
                self._refused(where, EVICTED, "its handshake slot went to a newer connection")
            else:
                self._refused(where, exc.reason if isinstance(exc, P2PError) else IO_ERROR, str(exc))
            return False
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        finally:
            if slot is not None:
                self._handshakes.release(slot)

        decoder.set_limit(config.frame_bytes_max)
        peer_id = identity.public_key
        connection = Connection(
            reader, writer, decoder, peer_id,
            dialer_id=self.key.public_key if dialled_peer is not None else peer_id,
            listen_port=identity.listen_port,
            config=config,
            counters=self.counters,
            message_filter=self._filter,
            inbound=self.inbound,
            sealer=sealer,
        )
        if not self._adopt(connection, remote):
            writer.transport.abort()
            self.counters.count_disconnect(DUPLICATE)
            return True
        try:
            await connection.run()
        finally:
            self._release(connection)
        return True

    def _adopt(self, connection: Connection, remote: str) -> bool:
        """Register a newly authenticated connection, unless the peer already has the
        connection that both ends keep; False if `connection` is the one to drop."""
        peer_id = connection.peer_id
        existing = self._connections.get(peer_id)
        if self._stopping or (existing is not None and self._keeps(existing, connection)):
            log.debug("dropped duplicate connection to %s from %s", short(peer_id), remote)
            return False
        self._connections[peer_id] = connection
        self._notify_peers_changed()
        if existing is not None:
            existing.close(DUPLICATE)
            log.debug("connection to %s replaced by one from %s", short(peer_id), remote)
            return True
        direction = "outbound" if connection.dialer_id == self.key.public_key else "inbound"
        log.info("peer %s joined (%s, %s, listens on port %d)",
                 short(peer_id), direction, remote, connection.listen_port)
        if self._on_peer_up is not None:
            self._on_peer_up(peer_id)
        return True

    def _keeps(self, existing: Connection, new: Connection) -> bool:
        """Whether `existing` survives a second connection `new` to the same peer."""
        if existing.dialer_id == new.dialer_id:
            return False
        return existing.dialer_id == min(self.key.public_key, existing.peer_id)

    def _release(self, connection: Connection) -> None:
        reason = connection.close_reason
        assert reason is not None
        self.counters.count_disconnect(reason)
        peer_id = connection.peer_id
        if self._connections.get(peer_id) is not connection:
            return  # superseded: the peer is still connected through its replacement
        del self._connections[peer_id]
        self._notify_peers_changed()
        log.info("peer %s left: %s", short(peer_id), reason)
        if self._on_peer_down is not None:
            self._on_peer_down(peer_id, reason)

    def _refused(self, where: str, reason: str, detail: str) -> None:
        """Count and log a connection that ended before or during its handshake (ours
        refused it, or the other side did and closed it)."""
        self.counters.count_disconnect(reason)
        log.warning("handshake %s refused: %s (%s)", where, reason, detail)

    def _filter(self, connection: Connection, message: Message) -> Message | None:
        """What of a received message reaches the node: everything but transport messages,
        which are out of place once the handshake is done."""
        kind = message["type"]
        if kind.startswith(RESERVED_PREFIX):
            raise ProtocolViolation(f"unexpected {kind!r} after the handshake")
        return message


class ListeningReader(asyncio.StreamReader):
    """A StreamReader that counts what arrived, read or not: a connection that has sent
    nothing yet is the one a handshake slot is taken from (p2p/admission.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes_received = 0

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        assert isinstance(data, bytes | bytearray | memoryview)
        self.bytes_received += len(data)
        super().feed_data(data)


def _remote(writer: asyncio.StreamWriter) -> str:
    peername = writer.get_extra_info("peername")
    return f"{peername[0]}:{peername[1]}" if peername else "?"
