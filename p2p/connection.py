"""One authenticated connection to a peer: its send queue, reader, writer and keepalive.

A Connection starts after a successful handshake and lives until the stream fails, the
peer goes quiet for `idle_timeout_ms`, or the network closes it. Three loops run per
connection, never one task per frame:

- the reader (the task that calls `run`) cuts frames out of large socket reads, passes
  each message through the network's filter (protocol checks) and
  puts what remains on the shared inbound queue, waiting while that queue is full;
- the writer takes every frame queued so far, seals each on an encrypted link
  (p2p/secure.py: the nonce is the frame's place in the stream, so sealing happens here, in
  write order, and a frame broadcast to many peers is encoded once but sealed per link),
  joins them into one socket write (up to `write_batch_bytes_max`) and waits for the
  socket to drain;
- the keepalive sends a PING when nothing else was sent for `idle_timeout_ms / 3` and
  closes the connection when nothing was received for `idle_timeout_ms`.

`send` never waits: a full queue drops the frame and the caller counts it. The first
reason recorded for closing wins, and `run` returns it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from p2p.config import P2PConfig
from p2p.counters import IDLE, IO_ERROR, STOPPED, P2PCounters
from p2p.errors import P2PError, PeerClosed
from p2p.framing import FrameDecoder, Message, encode_frame
from p2p.secure import FrameSealer

PING = "p2p.ping"
# Sent often and always the same: encode it once.
PING_FRAME = encode_frame({"type": PING}, 64)

# Turns a received message into the one to deliver, or None to drop it; raises a P2PError
# to close the connection.
MessageFilter = Callable[["Connection", Message], Message | None]
Inbound = asyncio.Queue[tuple[bytes, Message]]


class Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: FrameDecoder,
        peer_id: bytes,
        dialer_id: bytes,
        listen_port: int,
        config: P2PConfig,
        counters: P2PCounters,
        message_filter: MessageFilter,
        inbound: Inbound,
        sealer: FrameSealer | None,
    ) -> None:
        assert decoder.frame_bytes_max == config.frame_bytes_max
        self.peer_id = peer_id
        # Which of the two keys opened the TCP connection: it decides which of two
        # simultaneous connections to a peer survives.
        self.dialer_id = dialer_id
        self.listen_port = listen_port
        self.close_reason: str | None = None
        self._reader = reader
        self._writer = writer
        self._decoder = decoder
        self._config = config
        self._counters = counters
        self._filter = message_filter
        self._inbound = inbound
        self._sealer = sealer
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(config.peer_send_queue_max)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._last_received = loop.time()
        self._last_sent = loop.time()
        # While the reader waits for room in the inbound queue it is not reading, so the
        # peer's silence is ours: the idle check is suspended.
        self._inbound_waiting = False

    @property
    def remote_host(self) -> str:
        peername = self._writer.get_extra_info("peername")
        return str(peername[0]) if peername else "?"

    def send(self, frame: bytes) -> bool:
        """Queue an encoded frame; False (frame dropped) when the queue is full or closed."""
        if self.close_reason is not None:
            return False
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    def close(self, reason: str) -> None:
        """Close now, discarding unsent frames; `run` returns the first reason given."""
        if self.close_reason is None:
            self.close_reason = reason
        # abort() rather than close(): close() would wait for a peer that stopped
        # reading to take our buffered bytes, and the reader must see the end at once.
        self._writer.transport.abort()

    async def run(self) -> str:
        """Serve the connection until it closes; return why it closed."""
        writer_task = asyncio.create_task(self._write_loop())
        keepalive_task = asyncio.create_task(self._keepalive_loop())
        try:
            await self._read_loop()
        except P2PError as exc:
            self.close(exc.reason)
        except OSError:
            self.close(IO_ERROR)
        except asyncio.CancelledError:
            self.close(STOPPED)
            raise
        finally:
            writer_task.cancel()
            keepalive_task.cancel()
            self._writer.transport.abort()
            await asyncio.gather(writer_task, keepalive_task, return_exceptions=True)
        assert self.close_reason is not None
        return self.close_reason

    async def _read_loop(self) -> None:
        reader, decoder, counters = self._reader, self._decoder, self._counters
        read_max = self._config.read_bytes_max
        while True:
            while (message := decoder.next_message()) is not None:
                counters.frames_in += 1
                if message["type"] == PING:
                    continue
                delivered = self._filter(self, message)
                if delivered is not None:
                    await self._deliver(delivered)
            data = await reader.read(read_max)
            if not data:
                decoder.check_eof()
                raise PeerClosed()
            self._last_received = self._loop.time()
            counters.bytes_in += len(data)
            decoder.feed(data)

    async def _deliver(self, message: Message) -> None:
        item = (self.peer_id, message)
        try:
            self._inbound.put_nowait(item)
        except asyncio.QueueFull:
            # Stop reading until the consensus loop catches up: TCP then pushes back on
            # the peer, whose send queue fills and drops, instead of our memory growing.
            self._counters.inbound_full += 1
            self._inbound_waiting = True
            try:
                await self._inbound.put(item)
            finally:
                self._inbound_waiting = False
                self._last_received = self._loop.time()

    async def _write_loop(self) -> None:
        queue, writer, counters = self._queue, self._writer, self._counters
        batch_max = self._config.write_batch_bytes_max
        seal = (lambda frame: frame) if self._sealer is None else self._sealer.seal
        try:
            while True:
                batch = [seal(await queue.get())]
                size = len(batch[0])
                while size < batch_max and not queue.empty():
                    frame = seal(queue.get_nowait())
                    batch.append(frame)
                    size += len(frame)
                writer.write(b"".join(batch) if len(batch) > 1 else batch[0])
                counters.frames_out += len(batch)
                counters.bytes_out += size
                self._last_sent = self._loop.time()
                await writer.drain()
        except OSError:
            self.close(IO_ERROR)

    async def _keepalive_loop(self) -> None:
        idle_s = self._config.idle_timeout_ms / 1000
        interval_s = idle_s / 3
        while True:
            await asyncio.sleep(interval_s)
            now = self._loop.time()
            if not self._inbound_waiting and now - self._last_received > idle_s:
                self.close(IDLE)
                return
            if now - self._last_sent >= interval_s:
                # A full queue means frames are flowing; no PING needed then.
                with contextlib.suppress(asyncio.QueueFull):
                    self._queue.put_nowait(PING_FRAME)
