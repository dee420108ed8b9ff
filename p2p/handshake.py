"""Mutual authentication of two nodes' Ed25519 keys when a TCP connection opens.

Both sides speak at once, so the exchange costs one round trip after the connect:

    -> HELLO {chain_id, key, challenge (32 fresh random bytes), listen port, version}
    <- HELLO (the other side's)
    -> PROOF {sign(DOMAIN | chain_id | other's challenge | own key | other's key)}
    <- PROOF (the other side's), verified with the key from its HELLO

The signature binds the chain, a challenge the verifier chose a moment ago (no replay of
an old handshake), and both keys in signer-then-verifier order (a proof made for one
connection or one direction is useless on another). A side refuses, with a typed
HandshakeError, a wrong chain id, its own key (a dial to itself), a key outside the allowed
set (genesis bookkeepers plus registered observers, read at handshake time so run-time
updates apply), a bad signature, a malformed message, a HELLO that does not arrive within
`hello_timeout_ms`, and a handshake that does not end within `handshake_timeout_ms`. Until it ends frames are capped at
`handshake_frame_bytes_max`, so an unauthenticated stranger cannot make us buffer much.

The channel is authenticated, not encrypted, and later frames carry no MAC: someone who
can rewrite TCP traffic could inject frames after the handshake. That is acceptable here
because every consensus message and transaction is signed end to end by its author and
checked by the consensus layer, and the project's traffic stays on loopback. A deployment
across an untrusted network would put this transport inside TLS or a Noise channel.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

from crypto.errors import BadSignature
from crypto.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, KeyPair, verify
from p2p.config import P2PConfig
from p2p.errors import (
    BadProof,
    HandshakeTimeout,
    MalformedHandshake,
    SelfConnection,
    UnknownPeer,
    WrongChain,
)
from p2p.framing import FrameDecoder, Message, encode_frame, read_message

PROTOCOL_VERSION = 1
CHALLENGE_BYTES = 32
DOMAIN = b"gridchain/p2p-handshake/v1\x00"
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


def proof_message(chain_id: int, challenge: bytes, signer_key: bytes, verifier_key: bytes) -> bytes:
    """The bytes a side signs to prove its key to the verifier that sent `challenge`."""
    return DOMAIN + chain_id.to_bytes(8, "big", signed=True) + challenge + signer_key + verifier_key


async def _send(writer: asyncio.StreamWriter, message: Message, config: P2PConfig) -> None:
    writer.write(encode_frame(message, config.handshake_frame_bytes_max))
    await writer.drain()


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
) -> PeerIdentity:
    challenge = os.urandom(CHALLENGE_BYTES)
    await _send(writer, Hello(chain_id, key.public_key, challenge, listen_port).to_wire(), config)
    try:
        async with asyncio.timeout(config.hello_timeout_ms / 1000):
            first = await read_message(reader, decoder, config.read_bytes_max)
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

    signature = key.sign(proof_message(chain_id, hello.challenge, key.public_key, hello.public_key))
    await _send(writer, {"type": PROOF, "signature": signature}, config)
    proof = await read_message(reader, decoder, config.read_bytes_max)
    if proof.get("type") != PROOF:
        raise MalformedHandshake(f"expected {PROOF}, got {proof.get('type')!r}")
    their_signature = proof.get("signature")
    if not isinstance(their_signature, bytes) or len(their_signature) != SIGNATURE_BYTES:
        raise MalformedHandshake("signature is not 64 bytes")
    expected = proof_message(chain_id, challenge, hello.public_key, key.public_key)
    try:
        verify(hello.public_key, their_signature, expected)
    except BadSignature as exc:
        raise BadProof(hello.public_key) from exc
    return PeerIdentity(hello.public_key, hello.listen_port)


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
) -> PeerIdentity:
    """Authenticate the peer on a fresh connection, or raise a HandshakeError/FrameError.
    `on_hello` learns the allowed key the other side named, before it proved it.

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
