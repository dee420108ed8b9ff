"""Peer-to-peer transport of the node: asyncio TCP between bookkeepers and observers.

Length-prefixed msgpack frames with hard limits (framing), sealed with ChaCha20-Poly1305
under keys agreed by X25519 (secure), mutual Ed25519 authentication of node keys bound to
that agreement (handshake), bounded per-peer send queues and one bounded inbound queue
(connection, network). Which transaction goes to which peer is the node's business
(runtime/txrelay.py). The transport carries
messages, dicts with a str "type", and never touches consensus or chain state.

Public face: `Network`, `P2PConfig`, `P2PCounters` and the errors of p2p/errors.py.
"""

from p2p.config import P2PConfig
from p2p.counters import P2PCounters
from p2p.errors import (
    BadMessage,
    BadProof,
    EncryptionMismatch,
    FrameDecodeError,
    FrameError,
    FrameForged,
    FrameTooLarge,
    FrameTruncated,
    HandshakeError,
    HandshakeTimeout,
    MalformedHandshake,
    P2PConfigError,
    P2PError,
    PeerClosed,
    ProtocolViolation,
    SelfConnection,
    UnknownPeer,
    WrongChain,
)
from p2p.network import Network

__all__ = [
    "BadMessage",
    "BadProof",
    "EncryptionMismatch",
    "FrameDecodeError",
    "FrameError",
    "FrameForged",
    "FrameTooLarge",
    "FrameTruncated",
    "HandshakeError",
    "HandshakeTimeout",
    "MalformedHandshake",
    "Network",
    "P2PConfig",
    "P2PConfigError",
    "P2PCounters",
    "P2PError",
    "PeerClosed",
    "ProtocolViolation",
    "SelfConnection",
    "UnknownPeer",
    "WrongChain",
]
