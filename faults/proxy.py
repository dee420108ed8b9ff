"""Per-link TCP proxies on loopback, one per ordered pair of nodes (dialer -> target).

Every node's `[[p2p.peers]]` entry for node j points at the proxy of the link (i -> j), so
every peer connection crosses exactly one proxy. A connection carries both directions, so
each proxy runs two pumps, and each pump looks up the fault state of ITS direction
(src -> dst): a one-way cut of (a -> b) hits a's frames to b on whichever connection
carries them, whoever dialled it.

The pumps are frame-aware (p2p/framing.py: a 4-byte big-endian length, then the body):
they drop or delay whole frames, never a part of one, so what a node receives is always
a well-formed stream with frames missing, like a lossy link under a session that
resumes. Faults of a direction:

    blackhole   every frame is swallowed; the TCP connection stays open (a partition)
    drop        each frame is swallowed with probability drop_p
    delay       each frame is held delay_ms (+ uniform jitter_ms), order kept
    reset       `reset(src, dst)` closes the current connections of the link
    loss        each frame is lost once with probability loss_p and retransmitted as TCP
                does: it, and every frame behind it (order kept), arrives one RTO later
                (2 x delay_ms + TCP_RTO_MIN_MS, Linux's RTO on a steady path). The links are
                TCP, so a lost packet costs time, not a frame; this is the loss of bench.wan
    tamper      each frame is changed with probability tamper_p, as a man in the middle
                would: "flip" one byte of its body, "insert" a byte, "delete" a byte, or
                "replay" it (sent twice)

On encrypted links (the default, p2p/secure.py) the proxy sees only sealed frames: every
fault but delay and reset then ends the link at its next frame, and the nodes redial.

The proxies run on their own asyncio loop in a daemon thread, so the harness can block
(process control, the checker) without stalling traffic. State changes from the harness
are plain assignments of immutable LinkFault values, atomic under the GIL.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

LENGTH_BYTES = 4
FRAME_BYTES_MAX = 64 << 20  # beyond any node limit: a longer prefix is passed through raw
HOST = "127.0.0.1"
TAMPERS = ("flip", "insert", "delete", "replay")
TCP_RTO_MIN_MS = 200  # Linux's TCP_RTO_MIN: a retransmission waits at least this beyond the RTT


@dataclass(frozen=True)
class LinkFault:
    blackhole: bool = False
    drop_p: float = 0.0
    delay_ms: int = 0
    jitter_ms: int = 0
    tamper: str = "flip"  # one of TAMPERS, applied with probability tamper_p
    tamper_p: float = 0.0
    loss_p: float = 0.0  # lost once and retransmitted by TCP (see the module docstring)

    def __post_init__(self) -> None:
        assert self.tamper in TAMPERS, self.tamper

    @property
    def healthy(self) -> bool:
        return (not self.blackhole and self.drop_p == 0 and self.delay_ms == 0 and self.jitter_ms == 0
                and self.tamper_p == 0 and self.loss_p == 0)

    def describe(self) -> str:
        if self.blackhole:
            return "blackhole"
        parts = []
        if self.drop_p:
            parts.append(f"drop {self.drop_p:.0%}")
        if self.tamper_p:
            parts.append(f"{self.tamper} {self.tamper_p:.0%}")
        if self.delay_ms or self.jitter_ms:
            parts.append(f"delay {self.delay_ms}+{self.jitter_ms}ms")
        if self.loss_p:
            parts.append(f"loss {self.loss_p:.1%}")
        return ", ".join(parts) or "ok"


HEALTHY = LinkFault()


@dataclass
class LinkCounters:
    frames: int = 0
    dropped: int = 0
    delayed: int = 0
    tampered: int = 0
    retransmitted: int = 0  # frames held one RTO for loss_p
    connections: int = 0


@dataclass
class _Link:
    src: int
    dst: int
    target_port: int
    target_host: str
    server: asyncio.Server | None = None
    port: int = 0
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


class LinkProxies:
    """Proxies for every ordered pair of `nodes`; `start(target_ports)` binds them all on
    `listen_host` (loopback; the bridge address of faults/netns.py when each node has a
    network namespace of its own, `target_hosts` then its address)."""

    def __init__(self, nodes: int, seed: int = 0, listen_host: str = HOST) -> None:
        self.nodes = nodes
        self.listen_host = listen_host
        self.faults: dict[tuple[int, int], LinkFault] = {}
        self.counters: dict[tuple[int, int], LinkCounters] = {}
        self._links: dict[tuple[int, int], _Link] = {}
        self._random = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ----------------------------------------------------------------------------
    def start(self, target_ports: list[int], target_hosts: list[str] | None = None) -> None:
        hosts = target_hosts or [HOST] * self.nodes
        assert len(target_ports) == len(hosts) == self.nodes and self._thread is None
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fault-proxies", daemon=True)
        self._thread.start()
        ready.wait()
        asyncio.run_coroutine_threadsafe(self._bind(target_ports, hosts), self._loop).result(10)

    def _run(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        self._loop.run_forever()

    async def _bind(self, target_ports: list[int], target_hosts: list[str]) -> None:
        for src in range(self.nodes):
            for dst in range(self.nodes):
                if src == dst:
                    continue
                link = _Link(src, dst, target_ports[dst], target_hosts[dst])
                link.server = await asyncio.start_server(self._handler(link), self.listen_host, 0)
                link.port = link.server.sockets[0].getsockname()[1]
                self._links[(src, dst)] = link
                self.counters[(src, dst)] = LinkCounters()
                self.counters.setdefault((dst, src), LinkCounters())

    def _handler(self, link: _Link) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._serve(link, reader, writer)
        return handle

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            self._thread = None

    async def _close_all(self) -> None:
        for link in self._links.values():
            for writer in list(link.writers):
                writer.close()
            if link.server is not None:
                link.server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def port(self, src: int, dst: int) -> int:
        """The port node `src` dials to reach node `dst`."""
        return self._links[(src, dst)].port

    # faults -------------------------------------------------------------------------------
    def set(self, src: int, dst: int, fault: LinkFault) -> None:
        if fault.healthy:
            self.faults.pop((src, dst), None)
        else:
            self.faults[(src, dst)] = fault

    def set_many(self, pairs: Iterable[tuple[int, int]], fault: LinkFault) -> None:
        for src, dst in pairs:
            self.set(src, dst, fault)

    def partition(self, groups: list[list[int]]) -> None:
        """Blackhole every direction between different groups (nodes in no group are
        isolated from everyone)."""
        group_of = {node: g for g, members in enumerate(groups) for node in members}
        for src in range(self.nodes):
            for dst in range(self.nodes):
                if src != dst and group_of.get(src, -1 - src) != group_of.get(dst, -1 - dst):
                    self.set(src, dst, LinkFault(blackhole=True))

    def isolate(self, node: int) -> None:
        self.partition([[i for i in range(self.nodes) if i != node]])

    def heal(self) -> None:
        self.faults.clear()

    def reset(self, src: int, dst: int) -> None:
        """Close the open connections of the link (src -> dst); the nodes redial."""
        assert self._loop is not None
        link = self._links[(src, dst)]
        for writer in list(link.writers):
            self._loop.call_soon_threadsafe(writer.close)

    def describe(self) -> dict[str, str]:
        return {f"{s}->{d}": f.describe() for (s, d), f in sorted(self.faults.items())}

    # pumping ------------------------------------------------------------------------------
    async def _serve(self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters[(link.src, link.dst)].connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(link.target_host, link.target_port)
        except OSError:
            writer.close()
            return
        link.writers.update((writer, up_writer))
        pumps = [asyncio.ensure_future(self._pump(reader, up_writer, link.src, link.dst)),
                 asyncio.ensure_future(self._pump(up_reader, writer, link.dst, link.src))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for w in (writer, up_writer):
                link.writers.discard(w)
                w.close()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, src: int, dst: int) -> None:
        counters = self.counters[(src, dst)]
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send_in_order(queue, writer))
        last_due = 0.0
        try:
            while True:
                header = await reader.readexactly(LENGTH_BYTES)
                length = int.from_bytes(header, "big")
                if length > FRAME_BYTES_MAX:
                    # Not a frame a node would accept: pass the stream through unchanged and
                    # let the receiving node refuse it.
                    writer.write(header)
                    while data := await reader.read(1 << 16):
                        writer.write(data)
                    return
                frame = header + await reader.readexactly(length)
                counters.frames += 1
                fault = self.faults.get((src, dst), HEALTHY)
                if fault.blackhole or (fault.drop_p and self._random.random() < fault.drop_p):
                    counters.dropped += 1
                    continue
                if fault.tamper_p and self._random.random() < fault.tamper_p:
                    counters.tampered += 1
                    frame = self._tampered(frame, fault.tamper)
                due = 0.0
                held_ms = 0
                if fault.loss_p and self._random.random() < fault.loss_p:
                    counters.retransmitted += 1
                    held_ms = 2 * fault.delay_ms + TCP_RTO_MIN_MS
                if fault.delay_ms or fault.jitter_ms or held_ms:
                    counters.delayed += 1
                    delay_ms = fault.delay_ms + held_ms + self._random.uniform(0, fault.jitter_ms)
                    due = time.monotonic() + delay_ms / 1000
                    due = max(due, last_due)  # TCP keeps order
                    last_due = due
                queue.put_nowait((due, frame))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait(None)
            try:
                await asyncio.wait_for(sender, 5)
            except (TimeoutError, ConnectionError, OSError):
                sender.cancel()

    def _tampered(self, frame: bytes, how: str) -> bytes:
        """`frame` as a man in the middle changes it; the length prefix is left alone so that
        the change lands inside this frame (a changed prefix would shift every later one)."""
        if how == "replay":
            return frame + frame
        assert len(frame) > LENGTH_BYTES, "a frame body is never empty (a msgpack map, or a tag)"
        at = self._random.randrange(LENGTH_BYTES, len(frame))
        if how == "flip":
            return frame[:at] + bytes([frame[at] ^ self._random.randrange(1, 256)]) + frame[at + 1:]
        if how == "delete":
            return frame[:at] + frame[at + 1:]
        return frame[:at] + bytes([self._random.randrange(256)]) + frame[at:]  # insert

    @staticmethod
    async def _send_in_order(queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter) -> None:
        while (item := await queue.get()) is not None:
            due, frame = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(frame)
            if writer.transport.get_write_buffer_size() > 1 << 20:
                await writer.drain()
        writer.close()
