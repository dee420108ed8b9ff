"""Encrypted links under a man in the middle: the fault harness's proxy (faults/proxy.py)
sits between two Networks and flips, inserts, deletes, replays or drops frames after the
handshake. The link must fail and reconnect, and never deliver a changed frame; the same
proxy on a plain link shows what the encryption is for. Plus the AEAD's own vectors."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from crypto import KeyPair
from faults.proxy import LinkFault, LinkProxies
from p2p import FrameForged, Network, P2PConfig
from p2p.framing import encode_frame
from p2p.secure import TAG_BYTES, Ephemeral, FrameOpener, FrameSealer
from tests.test_p2p_network import CONFIG

pytestmark = pytest.mark.timeout(60)

CHAIN = 9
A, B = KeyPair.from_seed(b"\x21" * 32), KeyPair.from_seed(b"\x22" * 32)
ALLOWED = frozenset({A.public_key, B.public_key})
MESSAGES = 400
BLOB_BYTES = 600  # most of a frame, so a plain link's flipped byte usually lands in it
SEND_INTERVAL_S = 0.004


def message(n: int) -> dict[str, object]:
    return {"type": "data", "n": n, "blob": bytes([n % 251]) * BLOB_BYTES}


async def run_through_proxy(config: P2PConfig, fault: LinkFault) -> tuple[list[int], list[object], Network,
                                                                         LinkProxies]:
    """A dials B through a proxy that applies `fault` to A's frames for the first half of
    the messages, then heals. Returns which numbers A handed to a live link, everything B
    received, B, and the proxies."""
    b = Network(config, B, CHAIN, ALLOWED, "127.0.0.1", 0, {})
    await b.start()
    proxies = LinkProxies(2, seed=5)
    proxies.start([b.listen_port, b.listen_port])  # link 1 -> 0 is never used
    a = Network(config, A, CHAIN, ALLOWED, "127.0.0.1", 0, {B.public_key: ("127.0.0.1", proxies.port(0, 1))})
    await a.start()
    sent: list[int] = []
    received: list[object] = []
    try:
        await asyncio.wait_for(a.wait_connected([B.public_key]), 10)
        proxies.set(0, 1, fault)
        for n in range(MESSAGES):
            if n == MESSAGES // 2:
                proxies.heal()
            if a.send(B.public_key, message(n)):
                sent.append(n)
            while not b.inbound.empty():
                received.append(b.inbound.get_nowait()[1])
            await asyncio.sleep(SEND_INTERVAL_S)
        # After the heal the link comes back and the last message gets through.
        final = {"type": "final"}
        async with asyncio.timeout(20):
            while True:
                a.send(B.public_key, final)
                _, got = await b.inbound.get()
                received.append(got)
                if got == final:
                    break
        return sent, [m for m in received if m != final], b, proxies
    finally:
        await a.stop()
        await b.stop()
        proxies.stop()


@pytest.mark.parametrize("fault", [
    LinkFault(tamper="flip", tamper_p=0.05),
    LinkFault(tamper="insert", tamper_p=0.05),
    LinkFault(tamper="delete", tamper_p=0.05),
    LinkFault(tamper="replay", tamper_p=0.05),
    LinkFault(drop_p=0.05),
], ids=["flip", "insert", "delete", "replay", "drop"])
async def test_a_tampered_encrypted_link_fails_reconnects_and_never_delivers_a_changed_frame(
    fault: LinkFault,
) -> None:
    sent, received, b, proxies = await run_through_proxy(CONFIG, fault)
    counters = proxies.counters[(0, 1)]
    assert counters.tampered + counters.dropped > 0, "the proxy changed nothing: the test proves nothing"
    # Every frame B took is one A sent, unchanged, once, in order.
    numbers = [m["n"] for m in received]  # type: ignore[index]
    assert all(m == message(n) for m, n in zip(received, numbers, strict=True))
    assert numbers == sorted(set(numbers)) and set(numbers) <= set(sent)
    # The link failed at the forged frame (or, for a changed length, at a limit) and came back.
    assert b.counters.disconnect_frame_forged + b.counters.disconnect_frame_oversize >= 1
    assert counters.connections >= 2
    assert numbers and numbers[-1] >= MESSAGES // 2  # delivery resumed after the heal


async def test_the_same_proxy_changes_what_a_plain_link_delivers() -> None:
    """The control: without encryption, flipped bytes inside a blob reach the node."""
    sent, received, _, proxies = await run_through_proxy(replace(CONFIG, encryption=False),
                                                         LinkFault(tamper="flip", tamper_p=0.05))
    assert proxies.counters[(0, 1)].tampered > 0
    changed = [m for m in received if m["type"] == "data" and m != message(m["n"])]  # type: ignore[index]
    assert changed, "no flipped frame was delivered on the plain link"


def test_sealed_frames_open_once_in_order_and_only_with_their_key() -> None:
    session = Ephemeral().agree(Ephemeral().public_key)
    key = b"\x05" * 32
    sealer, opener = FrameSealer(key), FrameOpener(key)
    frames = [sealer.seal(encode_frame({"type": "x", "n": n}, 100)) for n in range(3)]
    assert all(len(f) == len(encode_frame({"type": "x", "n": 0}, 100)) + TAG_BYTES for f in frames)
    assert frames[0] != frames[1]  # the same length and type, a different nonce

    def open_frame(o: FrameOpener, frame: bytes) -> bytes:
        view = memoryview(frame)
        return o.open(view[:4], view[4:])

    with pytest.raises(FrameForged):
        open_frame(opener, frames[1])  # skipped frame 0
    assert open_frame(opener, frames[0]).endswith(b"\x00")
    with pytest.raises(FrameForged):
        open_frame(opener, frames[0])  # replayed
    with pytest.raises(FrameForged):
        open_frame(FrameOpener(b"\x06" * 32), frames[0])  # another key
    with pytest.raises(FrameForged):
        open_frame(session.opener, frames[0])
    forged_header = bytearray(frames[1])
    forged_header[3] ^= 1  # the length is authenticated too
    with pytest.raises(FrameForged):
        opener.open(memoryview(bytes(forged_header))[:4], memoryview(frames[1])[4:])


def test_both_sides_of_an_agreement_hold_matching_keys_and_transcript() -> None:
    x, y = Ephemeral(), Ephemeral()
    xs, ys = x.agree(y.public_key), y.agree(x.public_key)
    assert xs.transcript == ys.transcript
    frame = encode_frame({"type": "hi"}, 100)
    for sealer, opener in ((xs.sealer, ys.opener), (ys.sealer, xs.opener)):
        sealed = memoryview(sealer.seal(frame))
        assert opener.open(sealed[:4], sealed[4:]) == frame[4:]
    # each direction has its own key: x's frame reflected back to x does not open
    sealed = memoryview(xs.sealer.seal(frame))
    with pytest.raises(FrameForged):
        xs.opener.open(sealed[:4], sealed[4:])
