"""Handshake: mutual Ed25519 authentication over real loopback TCP, and its refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from crypto.keys import KeyPair
from p2p.config import P2PConfig
from p2p.errors import (
    BadProof,
    FrameTooLarge,
    HandshakeTimeout,
    MalformedHandshake,
    P2PError,
    PeerClosed,
    SelfConnection,
    UnknownPeer,
    WrongChain,
)
from p2p.framing import FrameDecoder, encode_frame, read_message
from p2p.handshake import PROOF, Hello, PeerIdentity, handshake, proof_message

CONFIG = P2PConfig(handshake_timeout_ms=1000)
CHAIN = 1337
ALICE = KeyPair.from_seed(b"\x01" * 32)
BOB = KeyPair.from_seed(b"\x02" * 32)
MALLORY = KeyPair.from_seed(b"\x03" * 32)

# What one side ends with: the peer it authenticated, or why not. A refusing side aborts
# the connection, so the other may see a reset rather than a clean end of stream.
Outcome = PeerIdentity | P2PError | OSError
Client = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[Outcome]]


def new_decoder() -> FrameDecoder:
    return FrameDecoder(CONFIG.handshake_frame_bytes_max, CONFIG.frame_container_len_max)


async def authenticate(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    key: KeyPair,
    chain_id: int = CHAIN,
    allowed: frozenset[bytes] = frozenset({ALICE.public_key, BOB.public_key}),
    port: int = 0,
) -> Outcome:
    try:
        return await handshake(
            reader, writer, new_decoder(), key, chain_id, port, allowed.__contains__, CONFIG
        )
    except (P2PError, OSError) as exc:
        writer.transport.abort()
        return exc


async def until_closed(reader: asyncio.StreamReader, decoder: FrameDecoder) -> Outcome:
    """Read what the server still sends (its PROOF) until it closes the connection."""
    try:
        while True:
            await read_message(reader, decoder, 4096)
    except (P2PError, OSError) as exc:
        return exc


async def exchange(server: Client, client: Client) -> tuple[Outcome, Outcome]:
    """Run `server` on an accepted loopback connection and `client` on the dialling end."""
    accepted: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(await server(reader, writer))
        writer.close()

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            client_outcome = await client(reader, writer)
            writer.close()
            return await accepted, client_outcome
    finally:
        listener.close()
        await listener.wait_closed()


async def test_both_sides_learn_the_others_key_and_listen_port() -> None:
    server_seen, client_seen = await exchange(
        lambda r, w: authenticate(r, w, BOB, port=4000),
        lambda r, w: authenticate(r, w, ALICE, port=5000),
    )
    assert server_seen == PeerIdentity(ALICE.public_key, 5000)
    assert client_seen == PeerIdentity(BOB.public_key, 4000)


async def test_wrong_chain_id_is_refused_by_both_sides() -> None:
    server_seen, client_seen = await exchange(
        lambda r, w: authenticate(r, w, BOB),
        lambda r, w: authenticate(r, w, ALICE, chain_id=CHAIN + 1),
    )
    assert isinstance(server_seen, WrongChain)
    assert (server_seen.expected, server_seen.got) == (CHAIN, CHAIN + 1)
    assert isinstance(client_seen, WrongChain)


async def test_key_outside_the_allowed_set_is_refused() -> None:
    server_seen, client_seen = await exchange(
        lambda r, w: authenticate(r, w, BOB),
        lambda r, w: authenticate(
            r, w, MALLORY, allowed=frozenset({BOB.public_key, MALLORY.public_key})
        ),
    )
    assert isinstance(server_seen, UnknownPeer)
    assert server_seen.public_key == MALLORY.public_key
    assert isinstance(client_seen, PeerClosed | ConnectionError)


async def test_connection_to_oneself_is_refused() -> None:
    server_seen, client_seen = await exchange(
        lambda r, w: authenticate(r, w, ALICE), lambda r, w: authenticate(r, w, ALICE)
    )
    assert isinstance(server_seen, SelfConnection)
    assert isinstance(client_seen, SelfConnection)


async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Outcome:
    """Claims ALICE's key without her private key: signs the right bytes with its own."""
    decoder = new_decoder()
    challenge = b"\x07" * 32
    writer.write(encode_frame(Hello(CHAIN, ALICE.public_key, challenge, 0).to_wire(), 1024))
    hello = Hello.from_wire(await read_message(reader, decoder, 4096))
    forged = MALLORY.sign(proof_message(CHAIN, hello.challenge, ALICE.public_key, hello.public_key))
    writer.write(encode_frame({"type": PROOF, "signature": forged}, 1024))
    return await until_closed(reader, decoder)


async def test_impostor_without_the_private_key_fails_the_proof() -> None:
    server_seen, client_seen = await exchange(lambda r, w: authenticate(r, w, BOB), impostor)
    assert isinstance(server_seen, BadProof)
    assert server_seen.public_key == ALICE.public_key
    assert isinstance(client_seen, PeerClosed | ConnectionError)


async def replayer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Outcome:
    """Has a genuine ALICE signature, but over an old challenge (a replayed handshake)."""
    decoder = new_decoder()
    writer.write(encode_frame(Hello(CHAIN, ALICE.public_key, b"\x07" * 32, 0).to_wire(), 1024))
    hello = Hello.from_wire(await read_message(reader, decoder, 4096))
    old = ALICE.sign(proof_message(CHAIN, b"\x00" * 32, ALICE.public_key, hello.public_key))
    writer.write(encode_frame({"type": PROOF, "signature": old}, 1024))
    return await until_closed(reader, decoder)


async def test_replayed_proof_over_another_challenge_fails() -> None:
    server_seen, _ = await exchange(lambda r, w: authenticate(r, w, BOB), replayer)
    assert isinstance(server_seen, BadProof)


def test_proof_message_binds_chain_challenge_and_key_order() -> None:
    base = proof_message(CHAIN, b"\x01" * 32, ALICE.public_key, BOB.public_key)
    assert base != proof_message(CHAIN + 1, b"\x01" * 32, ALICE.public_key, BOB.public_key)
    assert base != proof_message(CHAIN, b"\x02" * 32, ALICE.public_key, BOB.public_key)
    assert base != proof_message(CHAIN, b"\x01" * 32, BOB.public_key, ALICE.public_key)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Outcome:
    # Says nothing and waits for the server to give up.
    return await until_closed(reader, new_decoder())


async def test_handshake_not_finished_in_time_is_refused() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    server_seen, _ = await exchange(lambda r, w: authenticate(r, w, BOB), silent)
    elapsed = loop.time() - started
    assert isinstance(server_seen, HandshakeTimeout)
    # never before the timeout; the upper bound only catches a timeout that does not fire
    assert CONFIG.handshake_timeout_ms / 1000 <= elapsed < CONFIG.handshake_timeout_ms / 1000 + 20


def raw_client(payload: bytes) -> Client:
    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Outcome:
        writer.write(payload)
        return await until_closed(reader, new_decoder())

    return send


async def test_garbage_before_the_handshake_is_refused_at_the_length_prefix() -> None:
    server_seen, _ = await exchange(
        lambda r, w: authenticate(r, w, BOB), raw_client(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    )
    assert isinstance(server_seen, FrameTooLarge)
    assert server_seen.limit == CONFIG.handshake_frame_bytes_max


async def test_handshake_frames_have_their_own_small_limit() -> None:
    length = CONFIG.handshake_frame_bytes_max + 1
    assert length < CONFIG.frame_bytes_max
    server_seen, _ = await exchange(
        lambda r, w: authenticate(r, w, BOB), raw_client(length.to_bytes(4, "big"))
    )
    assert isinstance(server_seen, FrameTooLarge)


@pytest.mark.parametrize(
    "hello",
    [
        {"type": "p2p.proof", "signature": b"\x00" * 64},
        {**Hello(CHAIN, ALICE.public_key, b"\x01" * 32, 0).to_wire(), "version": 2},
        {**Hello(CHAIN, ALICE.public_key, b"\x01" * 32, 0).to_wire(), "key": b"\x01" * 31},
        {**Hello(CHAIN, ALICE.public_key, b"\x01" * 32, 0).to_wire(), "challenge": b"\x01"},
        {**Hello(CHAIN, ALICE.public_key, b"\x01" * 32, 0).to_wire(), "port": 70000},
        {**Hello(CHAIN, ALICE.public_key, b"\x01" * 32, 0).to_wire(), "chain_id": "1337"},
    ],
)
async def test_malformed_hello_is_refused(hello: dict[str, object]) -> None:
    server_seen, _ = await exchange(
        lambda r, w: authenticate(r, w, BOB), raw_client(encode_frame(hello, 1024))
    )
    assert isinstance(server_seen, MalformedHandshake)
