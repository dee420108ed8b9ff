"""Network over real loopback TCP: delivery, broadcast, reconnects, bad peers,
limits. Every test runs its own Networks on ephemeral ports and stops them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import msgpack
import pytest

from crypto import KeyPair
from p2p import FrameTooLarge, Network, P2PConfig
from p2p.framing import FrameDecoder, Message, encode_frame
from p2p.handshake import handshake
from p2p.secure import FrameSealer

pytestmark = pytest.mark.timeout(30)

CHAIN = 7
CONFIG = P2PConfig(
    handshake_timeout_ms=1000,
    dial_timeout_ms=500,
    reconnect_backoff_ms_min=20,
    reconnect_backoff_ms_max=200,
)
KEYS = [KeyPair.from_seed(bytes([i + 1]) * 32) for i in range(5)]
IDS = [key.public_key for key in KEYS]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


async def settled(x: Network, y: Network, timeout_s: float = 10.0) -> None:
    """Wait until x and y hold one connection to each other and agree which it is: a frame
    sent before that may go down a duplicate connection that is about to be dropped (both
    sides dial), and the test would depend on which dial won the race."""
    x_id, y_id = x.key.public_key, y.key.public_key

    def agreed() -> bool:
        ours, theirs = x._connections.get(y_id), y._connections.get(x_id)
        return ours is not None and theirs is not None and ours.dialer_id == theirs.dialer_id

    await eventually(agreed, timeout_s)


async def receive(network: Network, timeout_s: float = 10.0) -> tuple[bytes, Message]:
    return await asyncio.wait_for(network.inbound.get(), timeout_s)


@asynccontextmanager
async def mesh(
    count: int, config: P2PConfig = CONFIG, allowed: frozenset[bytes] = frozenset(IDS)
) -> AsyncIterator[list[Network]]:
    """`count` fully connected Networks with keys KEYS[:count]; KEYS beyond stay allowed
    (raw test peers use them)."""
    ports = free_ports(count)
    addresses = {IDS[i]: ("127.0.0.1", ports[i]) for i in range(count)}
    networks = [
        Network(config, KEYS[i], CHAIN, allowed, "127.0.0.1", ports[i], addresses)
        for i in range(count)
    ]
    try:
        for network in networks:
            await network.start()
        for i, network in enumerate(networks):
            await asyncio.wait_for(network.wait_connected(IDS[j] for j in range(count) if j != i), 5)
        for i in range(count):
            for j in range(i + 1, count):
                await settled(networks[i], networks[j])
        yield networks
    finally:
        for network in networks:
            await network.stop()


async def raw_peer(
    network: Network, key: KeyPair
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, FrameSealer]:
    """A hand-driven peer that authenticates honestly and then does what the test says,
    sealing its frames with the sealer returned."""
    reader, writer = await asyncio.open_connection("127.0.0.1", network.listen_port)
    decoder = FrameDecoder(CONFIG.handshake_frame_bytes_max, CONFIG.frame_container_len_max)
    _, sealer = await handshake(reader, writer, decoder, key, CHAIN, 0, lambda _: True, CONFIG)
    assert sealer is not None
    await eventually(lambda: key.public_key in network.connected_peers())
    return reader, writer, sealer


async def test_two_networks_exchange_messages_both_ways_in_order() -> None:
    async with mesh(2) as (a, b):
        for i in range(200):
            assert a.send(IDS[1], {"type": "ping-test", "i": i, "blob": b"\x00" * i})
        assert b.send(IDS[0], {"type": "reply", "ok": True})
        got = [await receive(b) for _ in range(200)]
        assert got == [(IDS[0], {"type": "ping-test", "i": i, "blob": b"\x00" * i}) for i in range(200)]
        assert await receive(a) == (IDS[1], {"type": "reply", "ok": True})
        assert a.counters.frames_out >= 200 and b.counters.frames_in >= 200
        assert b.counters.bytes_in > 200 * 199 // 2


async def test_send_to_an_unconnected_peer_returns_false() -> None:
    async with mesh(2) as (a, _):
        assert not a.send(IDS[4], {"type": "x"})
        assert a.counters.sends_no_peer == 1


async def test_three_networks_broadcast_honours_exclude() -> None:
    async with mesh(3) as (a, b, c):
        assert sorted(a.connected_peers()) == sorted([IDS[1], IDS[2]])
        assert a.broadcast({"type": "block", "n": 1}) == 2
        assert await receive(b) == (IDS[0], {"type": "block", "n": 1})
        assert await receive(c) == (IDS[0], {"type": "block", "n": 1})
        assert a.broadcast({"type": "block", "n": 2}, exclude=[IDS[2]]) == 1
        assert a.send(IDS[2], {"type": "marker"})
        assert await receive(b) == (IDS[0], {"type": "block", "n": 2})
        # One connection is FIFO: had block 2 gone to c, it would arrive before the marker.
        assert await receive(c) == (IDS[0], {"type": "marker"})
        assert c.inbound.empty()


async def test_peer_restart_reconnects_with_the_same_key_and_port() -> None:
    ups: list[bytes] = []
    downs: list[tuple[bytes, str]] = []
    ports = free_ports(2)
    addresses = {IDS[0]: ("127.0.0.1", ports[0]), IDS[1]: ("127.0.0.1", ports[1])}
    a = Network(CONFIG, KEYS[0], CHAIN, IDS, "127.0.0.1", ports[0], addresses,
                on_peer_up=ups.append, on_peer_down=lambda p, r: downs.append((p, r)))
    b = Network(CONFIG, KEYS[1], CHAIN, IDS, "127.0.0.1", ports[1], addresses)
    try:
        await a.start()
        await b.start()
        await asyncio.wait_for(a.wait_connected([IDS[1]]), 5)
        await b.stop()
        await eventually(lambda: a.connected_peers() == [])
        # b's sockets were aborted: a sees an end of stream, or a reset if data was unread.
        assert len(downs) == 1 and downs[0][0] == IDS[1] and downs[0][1] in ("eof", "io_error")
        # Only a dials now: b is gone, so a's dial loop backs off and keeps trying.
        dials_before = a.counters.dials
        await eventually(lambda: a.counters.dial_failures >= 2)
        assert a.counters.dials > dials_before

        b = Network(CONFIG, KEYS[1], CHAIN, IDS, "127.0.0.1", ports[1], {})
        await b.start()
        await asyncio.wait_for(a.wait_connected([IDS[1]]), 5)
        assert ups == [IDS[1], IDS[1]]
        assert a.send(IDS[1], {"type": "after-restart"})
        assert await receive(b) == (IDS[0], {"type": "after-restart"})
    finally:
        await a.stop()
        await b.stop()


async def test_simultaneous_dials_leave_one_connection_both_ends_agree_on() -> None:
    # A tiny backoff makes both sides dial at nearly the same moment.
    config = replace(CONFIG, reconnect_backoff_ms_min=1)
    async with mesh(2, config) as (a, b):  # mesh() waits until both ends agree on one connection
        assert a.connected_peers() == [IDS[1]] and b.connected_peers() == [IDS[0]]
        a_side = a._connections[IDS[1]]
        b_side = b._connections[IDS[0]]
        assert a_side.dialer_id == b_side.dialer_id
        if a.counters.disconnect_duplicate or b.counters.disconnect_duplicate:
            assert a_side.dialer_id == min(IDS[0], IDS[1])
        assert a.send(IDS[1], {"type": "x"}) and b.send(IDS[0], {"type": "y"})
        assert await receive(b) == (IDS[0], {"type": "x"})
        assert await receive(a) == (IDS[1], {"type": "y"})


async def test_dialling_oneself_is_refused() -> None:
    port = free_ports(1)[0]
    # A configuration mistake: another peer's id at our own address.
    a = Network(CONFIG, KEYS[0], CHAIN, IDS, "127.0.0.1", port, {IDS[1]: ("127.0.0.1", port)})
    try:
        await a.start()
        await eventually(lambda: a.counters.disconnect_self >= 2)
        assert a.connected_peers() == []
    finally:
        await a.stop()


async def outsider(key: KeyPair, chain_id: int, target: Network) -> Network:
    return Network(
        CONFIG, key, chain_id, IDS, "127.0.0.1", 0, {target.key.public_key: ("127.0.0.1", target.listen_port)}
    )


async def test_unknown_key_is_refused_while_honest_peers_stay_connected() -> None:
    stranger_key = KeyPair.from_seed(b"\x99" * 32)
    async with mesh(2) as (a, b):
        stranger = await outsider(stranger_key, CHAIN, a)
        try:
            await stranger.start()
            await eventually(lambda: a.counters.disconnect_unknown_key >= 1)
            assert stranger_key.public_key not in a.connected_peers()
            assert stranger.connected_peers() == []
        finally:
            await stranger.stop()
        assert a.connected_peers() == [IDS[1]]
        assert a.send(IDS[1], {"type": "still-here"})
        assert await receive(b) == (IDS[0], {"type": "still-here"})


async def test_wrong_chain_id_is_refused() -> None:
    async with mesh(2) as (a, _):
        # An allowed key, but configured for another chain.
        foreign = await outsider(KEYS[2], CHAIN + 1, a)
        try:
            await foreign.start()
            await eventually(lambda: a.counters.disconnect_wrong_chain >= 1)
            assert foreign.counters.disconnect_wrong_chain >= 1
            assert IDS[2] not in a.connected_peers()
        finally:
            await foreign.stop()


async def test_garbage_before_the_handshake_drops_only_that_connection() -> None:
    async with mesh(2) as (a, b):
        reader, writer = await asyncio.open_connection("127.0.0.1", a.listen_port)
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 10)  # a TLS ClientHello
        await eventually(lambda: a.counters.disconnect_frame_oversize == 1)
        writer.close()
        assert a.connected_peers() == [IDS[1]] and b.connected_peers() == [IDS[0]]


# Each stream is sealed before it is sent, but for the huge prefix, which is refused before
# any opening, and the forgery, which is made to fail it.
BAD_STREAMS = [
    ("huge length prefix", b"\xff\xff\xff\xf0", "disconnect_frame_oversize"),
    ("forged frame", b"\x00\x00\x00\x20" + b"\x07" * 32, "disconnect_frame_forged"),
    ("msgpack decode error", b"\x00\x00\x00\x02\xc1\xc1", "disconnect_frame_decode"),
    ("body not a map", msgpack.packb([1, 2]), None),
    ("transport message out of place", encode_frame({"type": "p2p.hello"}, 64), "disconnect_protocol"),
    ("unknown transport message", encode_frame({"type": "p2p.gossip", "id": 5, "msg": {"type": "t"}}, 64),
     "disconnect_protocol"),
]


@pytest.mark.parametrize(("what", "payload", "counter"), BAD_STREAMS, ids=[s[0] for s in BAD_STREAMS])
async def test_bad_frames_after_the_handshake_drop_only_the_bad_peer(
    what: str, payload: bytes, counter: str | None
) -> None:
    if counter is None:  # a valid msgpack body that is not a message
        payload = len(payload).to_bytes(4, "big") + payload
        counter = "disconnect_bad_message"
    raw = counter in ("disconnect_frame_oversize", "disconnect_frame_forged")
    async with mesh(3) as (a, b, c):
        reader, writer, sealer = await raw_peer(a, KEYS[3])
        # A good frame first: it is delivered, then the bad one ends the connection.
        writer.write(sealer.seal(encode_frame({"type": "fine"}, 64)) + (payload if raw else sealer.seal(payload)))
        assert await receive(a) == (IDS[3], {"type": "fine"})
        await eventually(lambda: IDS[3] not in a.connected_peers())
        assert getattr(a.counters, counter) == 1, what
        writer.close()
        assert sorted(a.connected_peers()) == sorted([IDS[1], IDS[2]])
        assert a.broadcast({"type": "after"}) == 2
        assert await receive(b) == (IDS[0], {"type": "after"})
        assert await receive(c) == (IDS[0], {"type": "after"})
        assert b.counters.disconnect_eof == c.counters.disconnect_eof == 0


async def test_truncated_frame_drops_the_peer() -> None:
    async with mesh(2) as (a, _):
        reader, writer, sealer = await raw_peer(a, KEYS[3])
        frame = sealer.seal(encode_frame({"type": "cut", "data": b"\x00" * 100}, 1024))
        writer.write(frame[:50])
        writer.write_eof()  # half-close: the frame can never be finished
        await eventually(lambda: IDS[3] not in a.connected_peers())
        assert a.counters.disconnect_frame_truncated == 1
        assert a.inbound.empty()
        writer.close()
        assert a.connected_peers() == [IDS[1]]


async def test_full_send_queue_drops_and_counts() -> None:
    config = replace(CONFIG, peer_send_queue_max=4)
    async with mesh(2, config) as (a, b):
        # send() never waits, so the writer cannot drain between these calls.
        results = [a.send(IDS[1], {"type": "m", "i": i}) for i in range(10)]
        assert results == [True] * 4 + [False] * 6
        assert a.counters.sends_dropped == 6
        assert [await receive(b) for _ in range(4)] == [(IDS[0], {"type": "m", "i": i}) for i in range(4)]
        await asyncio.sleep(0.1)
        assert b.inbound.empty()
        # Once drained, the queue takes messages again.
        assert a.send(IDS[1], {"type": "m", "i": 10})
        assert await receive(b) == (IDS[0], {"type": "m", "i": 10})


async def test_full_inbound_queue_pushes_back_without_losing_messages() -> None:
    config = replace(CONFIG, inbound_queue_max=2)
    async with mesh(2, config) as (a, b):
        for i in range(50):
            assert a.send(IDS[1], {"type": "m", "i": i})
        await eventually(lambda: b.counters.inbound_full >= 1)
        assert b.inbound.qsize() == 2
        got = [await receive(b) for _ in range(50)]
        assert got == [(IDS[0], {"type": "m", "i": i}) for i in range(50)]
        assert b.connected_peers() == [IDS[0]]


async def test_oversized_message_is_refused_at_send() -> None:
    config = replace(CONFIG, frame_bytes_max=4096)
    async with mesh(2, config) as (a, _):
        with pytest.raises(FrameTooLarge):
            a.send(IDS[1], {"type": "big", "blob": b"\x00" * 5000})


async def test_idle_peer_is_closed_while_pinging_peers_stay_connected() -> None:
    # PINGs go every idle/3 = 200 ms: a loop stall under CPU load must exceed 400 ms before
    # a pinging peer could look idle (300 ms made this test fail on a busy machine).
    config = replace(CONFIG, idle_timeout_ms=600)
    async with mesh(2, config) as (a, b):
        loop = asyncio.get_running_loop()
        # Before the handshake: the node's connection (and its idle clock) starts later,
        # and raw_peer notices it joined only at its next poll.
        joined = loop.time()
        reader, writer, _ = await raw_peer(a, KEYS[3])  # authenticates, then says nothing
        await eventually(lambda: IDS[3] not in a.connected_peers(), timeout_s=10)
        assert loop.time() - joined >= 0.6  # never before the idle timeout; late is only load
        assert a.counters.disconnect_idle == 1
        writer.close()
        # a and b sent nothing themselves for 3x the idle timeout: PINGs kept them up.
        await asyncio.sleep(1.8)
        assert a.connected_peers() == [IDS[1]] and b.connected_peers() == [IDS[0]]
        assert a.counters.disconnect_idle == 1 and b.counters.disconnect_idle == 0
        assert a.inbound.empty()  # PINGs are the transport's own, never delivered


async def test_removing_a_key_from_the_allowed_set_disconnects_it() -> None:
    downs: list[tuple[bytes, str]] = []
    async with mesh(3) as (a, b, c):
        a._on_peer_down = lambda peer, reason: downs.append((peer, reason))
        a.set_allowed_keys([IDS[0], IDS[1]])
        await eventually(lambda: IDS[2] not in a.connected_peers())
        assert downs == [(IDS[2], "revoked")]
        assert a.counters.disconnect_revoked == 1
        # c keeps dialling a and is now refused at the handshake.
        await eventually(lambda: a.counters.disconnect_unknown_key >= 1)
        assert a.connected_peers() == [IDS[1]]
        # Allowed again: c's dial loop gets back in.
        a.set_allowed_keys(IDS)
        await asyncio.wait_for(a.wait_connected([IDS[2]]), 10)
        await settled(a, c)  # both dial again: send on the connection both ends keep
        assert c.send(IDS[0], {"type": "back"})
        assert await receive(a) == (IDS[2], {"type": "back"})


async def test_squatters_on_the_handshake_slots_do_not_keep_a_peer_out() -> None:
    """Issue 10: 70 idle strangers filled the 64 handshake slots and kept a restarted
    bookkeeper out for 30 s. Strangers from the peer's own address (loopback, as in a
    test cluster) re-open every connection the node closes, for the whole test."""
    config = replace(CONFIG, pending_handshakes_max=16, pending_handshakes_per_host_max=8,
                     handshake_timeout_ms=5000, hello_timeout_ms=3000)
    ports = free_ports(2)
    a = Network(config, KEYS[0], CHAIN, IDS, "127.0.0.1", ports[0], {})
    await a.start()
    stop = asyncio.Event()
    opened = 0

    async def squat() -> None:
        nonlocal opened
        while not stop.is_set() and opened < 2_000:  # bounded in count and time
            opened += 1
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", a.listen_port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            try:
                await reader.read()  # silent until the node closes it
            except OSError:
                pass
            writer.close()

    squatters = [asyncio.create_task(squat()) for _ in range(20)]
    b = Network(config, KEYS[1], CHAIN, IDS, "127.0.0.1", ports[1], {IDS[0]: ("127.0.0.1", ports[0])})
    try:
        await eventually(lambda: len(a._handshakes) == 8, 5)  # the strangers hold every slot of the host
        await b.start()
        await asyncio.wait_for(a.wait_connected([IDS[1]]), 3)  # well under hello_timeout_ms
        assert a.counters.disconnect_evicted > 0
    finally:
        stop.set()
        await b.stop()
        await a.stop()
        for task in squatters:
            task.cancel()
        await asyncio.gather(*squatters, return_exceptions=True)


async def test_a_silent_stranger_is_closed_after_hello_timeout() -> None:
    config = replace(CONFIG, handshake_timeout_ms=10_000, hello_timeout_ms=300)
    port = free_ports(1)[0]
    a = Network(config, KEYS[0], CHAIN, IDS, "127.0.0.1", port, {})
    await a.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            while await reader.read(65536):  # our HELLO, then the close
                pass
        assert asyncio.get_running_loop().time() - started < 5  # well before handshake_timeout_ms
        await eventually(lambda: a.counters.disconnect_handshake_timeout == 1)
        writer.close()
    finally:
        await a.stop()
