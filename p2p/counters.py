"""P2PCounters: the transport's running totals, for the node to export as metrics.

Plain ints, only ever incremented, by the one event loop that runs the transport. Every
closed connection (refused handshakes included) adds one to exactly one `disconnect_*`
field, named after the `reason` of the error that closed it or the local decision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Reasons a connection closes that are local decisions, not errors from p2p/errors.py.
IDLE = "idle"
DUPLICATE = "duplicate"
REVOKED = "revoked"
STOPPED = "stopped"
BUSY = "busy"
EVICTED = "evicted"
IO_ERROR = "io_error"
PEER_ERROR = "peer_error"  # handling one of its messages raised: the node drops the peer


@dataclass
class P2PCounters:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    # Messages refused by `send`/`broadcast` because the peer's queue was full.
    sends_dropped: int = 0
    # Messages refused by `send` because no connection to the peer was up.
    sends_no_peer: int = 0
    # Times a reader found the inbound queue full and had to wait for the consensus loop.
    inbound_full: int = 0
    dials: int = 0
    dial_failures: int = 0
    # Post-handshake stream failures.
    disconnect_eof: int = 0
    disconnect_frame_oversize: int = 0
    disconnect_frame_truncated: int = 0
    disconnect_frame_decode: int = 0
    disconnect_frame_forged: int = 0
    disconnect_bad_message: int = 0
    disconnect_protocol: int = 0
    disconnect_io_error: int = 0
    disconnect_idle: int = 0
    # Refused handshakes.
    disconnect_wrong_chain: int = 0
    disconnect_unknown_key: int = 0
    disconnect_self: int = 0
    disconnect_bad_proof: int = 0
    disconnect_handshake_malformed: int = 0
    disconnect_handshake_timeout: int = 0
    disconnect_encryption_mismatch: int = 0
    # Local decisions: the losing one of two connections to a peer, a key removed from
    # the allowed set, too many handshakes in progress (refused, or evicted for a newer
    # connection: p2p/admission.py), shutdown, a message the node could not handle.
    disconnect_duplicate: int = 0
    disconnect_revoked: int = 0
    disconnect_busy: int = 0
    disconnect_evicted: int = 0
    disconnect_stopped: int = 0
    disconnect_peer_error: int = 0

    def count_disconnect(self, reason: str) -> None:
        field = f"disconnect_{reason}"
        assert hasattr(self, field), f"no counter for disconnect reason {reason!r}"
        setattr(self, field, getattr(self, field) + 1)

    def snapshot(self) -> dict[str, int]:
        return asdict(self)
