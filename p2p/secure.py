"""Encrypted, authenticated frames: the key agreement that opens a link and the AEAD that
seals every frame after it (docs/security.md says why this and not TLS).

Each side sends a fresh X25519 ephemeral key in the clear as the first frame of a
connection. Both then compute

    transcript = SHA-256(DOMAIN | lower ephemeral | higher ephemeral)
    keys       = HKDF-SHA256(X25519 shared secret, salt=transcript, info=DOMAIN), 64 bytes

and the side whose ephemeral is lower sends with the first 32 bytes and receives with the
last 32, the other the reverse, so each direction has its own key. From then on a frame on
the wire is its 4-byte length (of what follows) in the clear, then the body sealed with
ChaCha20-Poly1305 under a nonce that counts the direction's frames from 0, the length
being the associated data. A flipped, dropped, reordered, injected or replayed frame
fails its tag (the receiver's counter expects exactly the next frame), and the
connection closes with FrameForged; nothing of such a frame is ever decoded.

The ephemerals prove nobody's identity: the handshake then signs `transcript` with each
node key inside the sealed channel (p2p/handshake.py), which binds the identities to these
keys, so a man in the middle who ran one agreement with each side holds two transcripts
and neither signature fits the other. The lengths stay visible: an observer learns frame
sizes and timing (as with TLS records), and the fault harness's proxy can still hold,
delay and swallow whole frames (a swallowed one now ends the link).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from p2p.errors import FrameForged, MalformedHandshake
from p2p.framing import LENGTH_BYTES

DOMAIN = b"gridchain/p2p-secure/v1\x00"
EPHEMERAL_BYTES = 32
KEY_BYTES = 32
TAG_BYTES = 16
NONCE_BYTES = 12
# Nonces are the frame count; 2**64 frames is centuries at any rate we reach, so running
# out is a broken invariant, not a condition to handle.
FRAMES_MAX = 2**64 - 1


class FrameSealer:
    """Seals one direction's frames, in the order they are written."""

    def __init__(self, key: bytes) -> None:
        assert len(key) == KEY_BYTES
        self._aead = ChaCha20Poly1305(key)
        self._count = 0

    def seal(self, frame: bytes) -> bytes:
        """A plaintext frame (length + body, p2p/framing.py) as the sealed frame to write."""
        body = memoryview(frame)[LENGTH_BYTES:]
        header = (len(body) + TAG_BYTES).to_bytes(LENGTH_BYTES, "big")
        return header + self._aead.encrypt(self._next_nonce(), body, header)

    def _next_nonce(self) -> bytes:
        assert self._count < FRAMES_MAX, "nonce space exhausted"
        nonce = self._count.to_bytes(NONCE_BYTES, "little")
        self._count += 1
        return nonce


class FrameOpener:
    """Opens the other direction's frames, which must arrive each exactly once, in order."""

    overhead_bytes = TAG_BYTES

    def __init__(self, key: bytes) -> None:
        assert len(key) == KEY_BYTES
        self._aead = ChaCha20Poly1305(key)
        self._count = 0

    def open(self, header: memoryview, sealed: memoryview) -> bytes:
        """The body of a sealed frame, or FrameForged if it is not the next one we sent
        for (its tag fails under the expected nonce)."""
        assert self._count < FRAMES_MAX, "nonce space exhausted"
        try:
            body = self._aead.decrypt(self._count.to_bytes(NONCE_BYTES, "little"), sealed, header)
        except InvalidTag as exc:
            raise FrameForged(self._count) from exc
        self._count += 1
        return body


@dataclass(frozen=True)
class Session:
    sealer: FrameSealer
    opener: FrameOpener
    # What both node keys sign in the handshake: it names this agreement and no other.
    transcript: bytes


class Ephemeral:
    """One side's fresh X25519 key for one connection."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public_key = self._private.public_key().public_bytes_raw()

    def agree(self, their_key: bytes) -> Session:
        """The session keys shared with the side that sent `their_key`."""
        if len(their_key) != EPHEMERAL_BYTES:
            raise MalformedHandshake("ephemeral key is not 32 bytes")
        if their_key == self.public_key:
            # Our own key came back: the connection is looped onto itself.
            raise MalformedHandshake("the peer sent our own ephemeral key back")
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(their_key))
        except ValueError as exc:  # a low-order point: the shared secret would be all zeros
            raise MalformedHandshake("ephemeral key yields no shared secret") from exc
        lower, higher = sorted((self.public_key, their_key))
        transcript = hashlib.sha256(DOMAIN + lower + higher).digest()
        keys = HKDF(hashes.SHA256(), 2 * KEY_BYTES, salt=transcript, info=DOMAIN).derive(shared)
        lower_sends, higher_sends = keys[:KEY_BYTES], keys[KEY_BYTES:]
        if self.public_key == lower:
            return Session(FrameSealer(lower_sends), FrameOpener(higher_sends), transcript)
        return Session(FrameSealer(higher_sends), FrameOpener(lower_sends), transcript)
