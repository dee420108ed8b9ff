"""Handshake: key agreement and mutual Ed25519 authentication over real loopback TCP, and
its refusals; hand-driven peers play impostors, replayers and men in the middle."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from crypto import KeyPair
from p2p import (
    BadProof,
    EncryptionMismatch,
    FrameForged,
    FrameTooLarge,
    HandshakeTimeout,
    MalformedHandshake,
    P2PConfig,
    P2PError,
    PeerClosed,
    SelfConnection,
    UnknownPeer,
    WrongChain,
)
from p2p.framing import FrameDecoder, Message, encode_frame, read_message
from p2p.handshake import PROOF, Hello, PeerIdentity, agree, handshake, key_message, proof_message
from p2p.secure import Ephemeral, FrameSealer, Session

CONFIG = P2PConfig(handshake_timeout_ms=1000)
PLAIN = P2PConfig(handshake_timeout_ms=1000, encryption=False)
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
    config: P2PConfig = CONFIG,
) -> Outcome:
    try:
        identity, _ = await handshake(
            reader, writer, new_decoder(), key, chain_id, port, allowed.__contains__, config
        )
        return identity
    except (P2PError, OSError) as exc:
        writer.transport.abort()
        return exc


async def until_closed(reader: asyncio.StreamReader, decoder: FrameDecoder) -> Outcome:
    """Read what the server still sends until it closes the connection."""
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


async def open_session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, decoder: FrameDecoder
) -> Session:
    """A hand-driven side's key agreement; the decoder opens the peer's frames after it."""
    ephemeral = Ephemeral()
    writer.write(encode_frame(key_message(ephemeral), 1024))
    session = agree(ephemeral, await read_message(reader, decoder, 4096))
    decoder.set_opener(session.opener)
    return session


def sealed(sealer: FrameSealer, message: Message) -> bytes:
    return sealer.seal(encode_frame(message, 1024))


async def test_both_sides_learn_the_others_key_and_listen_port() -> None:
    server_seen, client_seen = await exchange(
        lambda r, w: authenticate(r, w, BOB, port=4000),
        lambda r, w: authenticate(r, w, ALICE, port=5000),
    )
    assert server_seen == PeerIdentity(ALICE.public_key, 5000)
    assert client_seen == PeerIdentity(BOB.public_key, 4000)


async def test_plain_links_authenticate_the_same_way() -> None:
    server_seen, client_seen = await exchange(
        lambda r, w: authenticate(r, w, BOB, config=PLAIN),
        lambda r, w: authenticate(r, w, ALICE, config=PLAIN),
    )
    assert server_seen == PeerIdentity(ALICE.public_key, 0)
    assert client_seen == PeerIdentity(BOB.public_key, 0)


@pytest.mark.parametrize("server_encrypts", [True, False])
async def test_an_encrypted_and_a_plain_side_refuse_each_other(server_encrypts: bool) -> None:
    server_seen, client_seen = await exchange(
        lambda r, w: authenticate(r, w, BOB, config=CONFIG if server_encrypts else PLAIN),
        lambda r, w: authenticate(r, w, ALICE, config=PLAIN if server_encrypts else CONFIG),
    )
    assert isinstance(server_seen, EncryptionMismatch) and server_seen.ours is server_encrypts
    assert isinstance(client_seen, EncryptionMismatch | PeerClosed | ConnectionError)


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


async def outsider(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, after_hello: list[Message]
) -> Outcome:
    """MALLORY, outside the set, handshakes honestly and pipelines a frame after its PROOF;
    it collects what the server sends after its HELLO into `after_hello`."""
    decoder = new_decoder()
    session = await open_session(reader, writer, decoder)
    writer.write(sealed(session.sealer, Hello(CHAIN, MALLORY.public_key, b"\x07" * 32, 0).to_wire()))
    hello = Hello.from_wire(await read_message(reader, decoder, 4096))
    signature = MALLORY.sign(proof_message(CHAIN, hello.challenge, MALLORY.public_key, hello.public_key,
                                           session.transcript))
    writer.write(sealed(session.sealer, {"type": PROOF, "signature": signature})
                 + sealed(session.sealer, {"type": "tx", "data": b"x"}))
    try:
        while True:
            after_hello.append(await read_message(reader, decoder, 4096))
    except (P2PError, OSError) as exc:
        return exc


async def test_a_key_outside_the_set_gets_no_frame_past_the_servers_hello() -> None:
    after_hello: list[Message] = []
    server_seen, client_seen = await exchange(
        lambda r, w: authenticate(r, w, BOB), lambda r, w: outsider(r, w, after_hello))
    assert isinstance(server_seen, UnknownPeer)
    assert after_hello == [] and isinstance(client_seen, PeerClosed | ConnectionError)


async def test_connection_to_oneself_is_refused() -> None:
    server_seen, client_seen = await exchange(
        lambda r, w: authenticate(r, w, ALICE), lambda r, w: authenticate(r, w, ALICE)
    )
    assert isinstance(server_seen, SelfConnection)
    assert isinstance(client_seen, SelfConnection)


async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Outcome:
    """Claims ALICE's key without her private key: signs the right bytes with its own."""
    decoder = new_decoder()
    session = await open_session(reader, writer, decoder)
    writer.write(sealed(session.sealer, Hello(CHAIN, ALICE.public_key, b"\x07" * 32, 0).to_wire()))
    hello = Hello.from_wire(await read_message(reader, decoder, 4096))
    forged = MALLORY.sign(proof_message(CHAIN, hello.challenge, ALICE.public_key, hello.public_key,
                                        session.transcript))
    writer.write(sealed(session.sealer, {"type": PROOF, "signature": forged}))
    return await until_closed(reader, decoder)


async def test_impostor_without_the_private_key_fails_the_proof() -> None:
    server_seen, client_seen = await exchange(lambda r, w: authenticate(r, w, BOB), impostor)
    assert isinstance(server_seen, BadProof)
    assert server_seen.public_key == ALICE.public_key
    assert isinstance(client_seen, PeerClosed | ConnectionError)


async def replayer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Outcome:
    """Has a genuine ALICE signature, but over an old challenge (a replayed handshake)."""
    decoder = new_decoder()
    session = await open_session(reader, writer, decoder)
    writer.write(sealed(session.sealer, Hello(CHAIN, ALICE.public_key, b"\x07" * 32, 0).to_wire()))
    hello = Hello.from_wire(await read_message(reader, decoder, 4096))
    old = ALICE.sign(proof_message(CHAIN, b"\x00" * 32, ALICE.public_key, hello.public_key, session.transcript))
    writer.write(sealed(session.sealer, {"type": PROOF, "signature": old}))
    return await until_closed(reader, decoder)


async def test_replayed_proof_over_another_challenge_fails() -> None:
    server_seen, _ = await exchange(lambda r, w: authenticate(r, w, BOB), replayer)
    assert isinstance(server_seen, BadProof)


async def test_a_man_in_the_middle_cannot_pass_one_sides_proof_to_the_other() -> None:
    """MALLORY agrees keys with BOB and, separately, with ALICE, and relays every handshake
    message between them unchanged: ALICE's proof names ALICE's transcript, not BOB's."""
    accepted: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    async def bob_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(await authenticate(reader, writer, BOB))

    listener = await asyncio.start_server(bob_side, "127.0.0.1", 0)
    bob_port = listener.sockets[0].getsockname()[1]
    alice_seen: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    async def middle(alice_r: asyncio.StreamReader, alice_w: asyncio.StreamWriter) -> None:
        bob_r, bob_w = await asyncio.open_connection("127.0.0.1", bob_port)
        to_alice, to_bob = new_decoder(), new_decoder()
        alice_session = await open_session(alice_r, alice_w, to_alice)
        bob_session = await open_session(bob_r, bob_w, to_bob)
        try:
            for _ in range(2):  # HELLO, then PROOF, each way
                from_alice = await read_message(alice_r, to_alice, 4096)
                bob_w.write(sealed(bob_session.sealer, from_alice))
                from_bob = await read_message(bob_r, to_bob, 4096)
                alice_w.write(sealed(alice_session.sealer, from_bob))
        except (P2PError, OSError):
            pass
        alice_w.close()
        bob_w.close()

    middle_listener = await asyncio.start_server(middle, "127.0.0.1", 0)
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", middle_listener.sockets[0].getsockname()[1])
            alice_seen.set_result(await authenticate(reader, writer, ALICE))
            writer.close()
            bob_outcome = await accepted
    finally:
        listener.close()
        middle_listener.close()
    assert isinstance(bob_outcome, BadProof) and bob_outcome.public_key == ALICE.public_key
    assert isinstance(alice_seen.result(), BadProof | PeerClosed | ConnectionError)


async def test_a_recorded_connection_replayed_to_the_node_is_refused() -> None:
    """Every byte ALICE sent on a successful connection, replayed to BOB on a new one: BOB's
    fresh ephemeral gives new keys, so the recorded HELLO fails its tag."""
    recorded = bytearray()

    async def alice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Outcome:
        real_write = writer.write

        def recording_write(data: bytes | bytearray | memoryview) -> None:
            recorded.extend(data)
            real_write(data)

        writer.write = recording_write  # type: ignore[method-assign]
        return await authenticate(reader, writer, ALICE)

    server_seen, client_seen = await exchange(lambda r, w: authenticate(r, w, BOB), alice)
    assert server_seen == PeerIdentity(ALICE.public_key, 0) and isinstance(client_seen, PeerIdentity)
    server_seen, _ = await exchange(lambda r, w: authenticate(r, w, BOB), raw_client(bytes(recorded)))
    assert isinstance(server_seen, FrameForged) and server_seen.index == 0


async def test_a_reflected_key_exchange_is_refused() -> None:
    async def mirror(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Outcome:
        decoder = new_decoder()
        writer.write(encode_frame(await read_message(reader, decoder, 4096), 1024))
        return await until_closed(reader, decoder)

    server_seen, _ = await exchange(lambda r, w: authenticate(r, w, BOB), mirror)
    assert isinstance(server_seen, MalformedHandshake) and "own ephemeral" in server_seen.detail


def test_proof_message_binds_chain_challenge_key_order_and_transcript() -> None:
    base = proof_message(CHAIN, b"\x01" * 32, ALICE.public_key, BOB.public_key, b"\x05" * 32)
    assert base != proof_message(CHAIN + 1, b"\x01" * 32, ALICE.public_key, BOB.public_key, b"\x05" * 32)
    assert base != proof_message(CHAIN, b"\x02" * 32, ALICE.public_key, BOB.public_key, b"\x05" * 32)
    assert base != proof_message(CHAIN, b"\x01" * 32, BOB.public_key, ALICE.public_key, b"\x05" * 32)
    assert base != proof_message(CHAIN, b"\x01" * 32, ALICE.public_key, BOB.public_key, b"\x06" * 32)


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
    "key",
    [
        {"type": "p2p.key", "version": 1, "ephemeral": b"\x01" * 31},
        {"type": "p2p.key", "version": 2, "ephemeral": b"\x09" * 32},
        {"type": "p2p.key", "version": 1, "ephemeral": "not bytes"},
        # a low-order point: the X25519 shared secret would be all zeros
        {"type": "p2p.key", "version": 1, "ephemeral": b"\x00" * 32},
        {"type": "p2p.proof", "signature": b"\x00" * 64},
    ],
)
async def test_malformed_key_exchange_is_refused(key: Message) -> None:
    server_seen, _ = await exchange(
        lambda r, w: authenticate(r, w, BOB), raw_client(encode_frame(key, 1024))
    )
    assert isinstance(server_seen, MalformedHandshake)


def hello_client(hello: Message) -> Client:
    async def send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Outcome:
        decoder = new_decoder()
        session = await open_session(reader, writer, decoder)
        writer.write(sealed(session.sealer, hello))
        return await until_closed(reader, decoder)

    return send


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
async def test_malformed_hello_is_refused(hello: Message) -> None:
    server_seen, _ = await exchange(lambda r, w: authenticate(r, w, BOB), hello_client(hello))
    assert isinstance(server_seen, MalformedHandshake)
