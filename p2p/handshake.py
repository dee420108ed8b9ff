"""Mutual authentication of two nodes' Ed25519 keys when a TCP connection opens.

Both sides speak at once. On an encrypted link (`[p2p] encryption`, the default) they first
agree on session keys (p2p/secure.py) and everything after is sealed:

    -> KEY   {ephemeral X25519 key, version}                     in the clear
    <- KEY   (the other side's)
    -> HELLO {chain_id, key, challenge (32 fresh random bytes), listen port, version}
    <- HELLO (the other side's)
    -> PROOF {sign(DOMAIN | chain_id | other's challenge | own key | other's key | transcript)}
    <- PROOF (the other side's), verified with the key from its HELLO

The signature binds the chain, a challenge the verifier chose a moment ago (no replay of
an old handshake), both keys in signer-then-verifier order (a proof made for one
connection or one direction is useless on another) and the transcript of the key
agreement (a man in the middle who agreed keys with each side separately cannot pass one
side's proof to the other). A side refuses, with a typed HandshakeError, a wrong chain id,
its own key (a dial to itself), a key outside the allowed set (genesis bookkeepers plus
registered observers, read at handshake time so run-time updates apply), a bad
signature, a malformed message, a peer of the other encryption setting, a HELLO that does
not arrive within `hello_timeout_ms` of the connect, and a handshake that does not end
within `handshake_timeout_ms`. A key outside the set gets nothing but our KEY and HELLO
(no PROOF, no frame after), and no frame of the peer reaches the node before both
proofs are checked. Until the handshake ends frames are capped at
`handshake_frame_bytes_max`, so an unauthenticated stranger cannot make us buffer much.

With `encryption = false` (kept for benchmarks that measure its cost) the KEY exchange is
skipped, the transcript is empty and frames travel in the clear without a MAC: the peer
is still authenticated, but someone who can rewrite TCP traffic could change or inject
frames after the handshake.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

from crypto import BadSignature, KeyPair, verify
from crypto.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES
from p2p.config import P2PConfig
from p2p.errors import (
    BadProof,
    EncryptionMismatch,
    HandshakeTimeout,
    MalformedHandshake,
    SelfConnection,
    UnknownPeer,
    WrongChain,
)
from p2p.framing import FrameDecoder, Message, encode_frame, read_message
from p2p.secure import Ephemeral, FrameSealer, Session

PROTOCOL_VERSION = 1
CHALLENGE_BYTES = 32
DOMAIN = b"gridchain/p2p-handshake/v1\x00"
KEY = "p2p.key"
HELLO = "p2p.hello"
PROOF = "p2p.proof"
PORT_MAX = 65535


@dataclass(frozen=True)
class Hello:
    chain_id: int
    public_key: bytes
    challenge: bytes
    listen_port: int

    def to_wire(self) -> Message:
        return {
            "type": HELLO,
            "version": PROTOCOL_VERSION,
            "chain_id": self.chain_id,
            "key": self.public_key,
            "challenge": self.challenge,
            "port": self.listen_port,
        }

    @classmethod
    def from_wire(cls, message: Message) -> Hello:
        if message.get("type") != HELLO:
            raise MalformedHandshake(f"expected {HELLO}, got {message.get('type')!r}")
        if message.get("version") != PROTOCOL_VERSION:
            raise MalformedHandshake(f"unsupported version {message.get('version')!r}")
        chain_id, key = message.get("chain_id"), message.get("key")
        challenge, port = message.get("challenge"), message.get("port")
        if not isinstance(chain_id, int) or isinstance(chain_id, bool):
            raise MalformedHandshake("chain_id is not an integer")
        if not isinstance(key, bytes) or len(key) != PUBLIC_KEY_BYTES:
            raise MalformedHandshake("key is not a 32-byte Ed25519 public key")
        if not isinstance(challenge, bytes) or len(challenge) != CHALLENGE_BYTES:
            raise MalformedHandshake("challenge is not 32 bytes")
        # Port 0 means "does not listen" (an observer that only dials out).
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= PORT_MAX:
            raise MalformedHandshake("listen port out of range")
        return cls(chain_id, key, challenge, port)


@dataclass(frozen=True)
class PeerIdentity:
    """What a finished handshake proves about the other side."""

    public_key: bytes
    listen_port: int


def proof_message(
    chain_id: int, challenge: bytes, signer_key: bytes, verifier_key: bytes, transcript: bytes = b""
) -> bytes:
    """The bytes a side signs to prove its key to the verifier that sent `challenge`, on
    the link whose key agreement has `transcript` (empty on a plain link)."""
    return (DOMAIN + chain_id.to_bytes(8, "big", signed=True) + challenge + signer_key + verifier_key
            + transcript)


def key_message(ephemeral: Ephemeral) -> Message:
    return {"type": KEY, "version": PROTOCOL_VERSION, "ephemeral": ephemeral.public_key}


def agree(ephemeral: Ephemeral, message: Message) -> Session:
    """The session agreed with the side whose first message is `message` (its KEY)."""
    if message.get("type") == HELLO:
        raise EncryptionMismatch(True)
    if message.get("type") != KEY:
        raise MalformedHandshake(f"expected {KEY}, got {message.get('type')!r}")
    if message.get("version") != PROTOCOL_VERSION:
        raise MalformedHandshake(f"unsupported version {message.get('version')!r}")
    their_key = message.get("ephemeral")
    if not isinstance(their_key, bytes):
        raise MalformedHandshake("ephemeral key is not bytes")
    return ephemeral.agree(their_key)


def check_proof(message: Message, expected: bytes, public_key: bytes) -> None:
    """Raise unless `message` is a PROOF carrying `public_key`'s signature on `expected`."""
    if message.get("type") != PROOF:
        raise MalformedHandshake(f"expected {PROOF}, got {message.get('type')!r}")
    signature = message.get("signature")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise MalformedHandshake("signature is not 64 bytes")
    try:
        verify(public_key, signature, expected)
    except BadSignature as exc:
        raise BadProof(public_key) from exc


async def _send(
    writer: asyncio.StreamWriter, message: Message, config: P2PConfig, sealer: FrameSealer | None
) -> None:
    frame = encode_frame(message, config.handshake_frame_bytes_max)
    writer.write(frame if sealer is None else sealer.seal(frame))
    await writer.drain()


async def _hello(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    decoder: FrameDecoder,
    hello: Hello,
    config: P2PConfig,
) -> tuple[Message, Session | None]:
    """Agree on keys (encrypted links), send our HELLO and return the first message after
    the agreement, which should be the peer's HELLO."""
    session = None
    if config.encryption:
        ephemeral = Ephemeral()
        await _send(writer, key_message(ephemeral), config, None)
        session = agree(ephemeral, await read_message(reader, decoder, config.read_bytes_max))
        decoder.set_opener(session.opener)
    await _send(writer, hello.to_wire(), config, None if session is None else session.sealer)
    first = await read_message(reader, decoder, config.read_bytes_max)
    if session is None and first.get("type") == KEY:
        raise EncryptionMismatch(False)
    return first, session


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    decoder: FrameDecoder,
    key: KeyPair,
    chain_id: int,
    listen_port: int,
    is_allowed: Callable[[bytes], bool],
    config: P2PConfig,
    on_hello: Callable[[bytes], None] | None,
) -> tuple[PeerIdentity, FrameSealer | None]:
    challenge = os.urandom(CHALLENGE_BYTES)
    ours = Hello(chain_id, key.public_key, challenge, listen_port)
    try:
        async with asyncio.timeout(config.hello_timeout_ms / 1000):
            first, session = await _hello(reader, writer, decoder, ours, config)
    except TimeoutError as exc:
        raise HandshakeTimeout(config.hello_timeout_ms) from exc
    hello = Hello.from_wire(first)
    if hello.chain_id != chain_id:
        raise WrongChain(chain_id, hello.chain_id)
    if hello.public_key == key.public_key:
        raise SelfConnection()
    if not is_allowed(hello.public_key):
        raise UnknownPeer(hello.public_key)
    if on_hello is not None:
        on_hello(hello.public_key)

    transcript = b"" if session is None else session.transcript
    sealer = None if session is None else session.sealer
    signature = key.sign(proof_message(chain_id, hello.challenge, key.public_key, hello.public_key, transcript))
    await _send(writer, {"type": PROOF, "signature": signature}, config, sealer)
    check_proof(await read_message(reader, decoder, config.read_bytes_max),
                proof_message(chain_id, challenge, hello.public_key, key.public_key, transcript), hello.public_key)
    return PeerIdentity(hello.public_key, hello.listen_port), sealer


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    decoder: FrameDecoder,
    key: KeyPair,
    chain_id: int,
    listen_port: int,
    is_allowed: Callable[[bytes], bool],
    config: P2PConfig,
    on_hello: Callable[[bytes], None] | None = None,
) -> tuple[PeerIdentity, FrameSealer | None]:
    """Authenticate the peer on a fresh connection, or raise a HandshakeError/FrameError.
    Returns what was proven and, on an encrypted link, the sealer for every later frame we
    send (the decoder already opens the peer's). `on_hello` learns the allowed key the
    other side named, before it proved it.

    `decoder` must be the connection's decoder, set to the handshake frame limit; frames the
    peer pipelines after its PROOF stay buffered in it for the connection to read. The
    caller closes the connection on any error.
    """
    assert decoder.frame_bytes_max <= config.handshake_frame_bytes_max
    try:
        async with asyncio.timeout(config.handshake_timeout_ms / 1000):
            return await _exchange(
                reader, writer, decoder, key, chain_id, listen_port, is_allowed, config, on_hello
            )
    except TimeoutError as exc:
        raise HandshakeTimeout(config.handshake_timeout_ms) from exc
