"""P2PConfig: every limit of the transport, named with its unit last (style habit 8).

The defaults suit a handful of bookkeepers and observers on one host or a LAN. The node
builds one from its TOML configuration; tests shrink the timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from p2p.errors import P2PConfigError

MIB = 1024 * 1024


@dataclass(frozen=True)
class P2PConfig:
    # Largest frame body accepted or sent once a peer is authenticated. A block sync
    # batch is the biggest message; 4 MiB keeps one frame well under a second to move.
    frame_bytes_max: int = 4 * MIB
    # Largest frame before authentication: KEY, HELLO and PROOF are ~60-170 bytes, so an
    # unauthenticated stranger can never make us buffer more than this.
    handshake_frame_bytes_max: int = 1024
    # Largest array or map inside one frame body; msgpack would otherwise allow one
    # element per byte (4 Mi list slots, ~32 MiB of pointers, from one 4 MiB frame).
    frame_container_len_max: int = 65536
    # Bytes asked of the socket per read; frames are cut out of these chunks.
    read_bytes_max: int = 256 * 1024
    # Bytes joined into one socket write when several frames are queued for a peer.
    write_batch_bytes_max: int = 1 * MIB
    # Frames waiting to be written to one peer; above it `send` drops and counts.
    peer_send_queue_max: int = 4096
    # (peer_id, message) items waiting for the consensus loop; above it readers stop
    # reading, which pushes back on the senders through TCP.
    inbound_queue_max: int = 10000
    # Inbound connections still in their handshake. When full, a new connection evicts the
    # oldest one that has sent nothing yet (p2p/admission.py): strangers squatting the
    # slots cannot keep configured peers out (a peer sends its HELLO on connect).
    pending_handshakes_max: int = 64
    # Inbound connections in their handshake from one remote host; over it, the host's
    # oldest connection that has sent nothing yet is evicted.
    pending_handshakes_per_host_max: int = 8
    handshake_timeout_ms: int = 5000
    # The other side's HELLO must arrive this soon after the connect: a peer sends its KEY at
    # once and its HELLO right after the key agreement, so only a silent stranger waits this
    # long, and it holds a slot at most this long (or handshake_timeout_ms, if shorter).
    hello_timeout_ms: int = 2000
    dial_timeout_ms: int = 3000
    # A connection with no frame received for this long is closed; each side sends a
    # PING every idle_timeout_ms / 3 when it has sent nothing else, so a healthy peer
    # never reaches it.
    idle_timeout_ms: int = 30000
    # Reconnect delay doubles from min up to max after each failed dial to a peer.
    reconnect_backoff_ms_min: int = 100
    reconnect_backoff_ms_max: int = 5000
    # Longest wait for a closing socket to flush before it is aborted.
    close_timeout_ms: int = 1000
    # Seal every frame after the key agreement (p2p/secure.py). false sends frames in the
    # clear with no MAC, for benchmarks that measure the cost; both ends must agree.
    encryption: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "bool":
                if not isinstance(value, bool):
                    raise P2PConfigError(f.name, value, "must be true or false")
            elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise P2PConfigError(f.name, value, "must be a positive integer")
        if self.reconnect_backoff_ms_min > self.reconnect_backoff_ms_max:
            raise P2PConfigError(
                "reconnect_backoff_ms_min",
                self.reconnect_backoff_ms_min,
                "must not exceed reconnect_backoff_ms_max",
            )
        if self.pending_handshakes_per_host_max > self.pending_handshakes_max:
            raise P2PConfigError(
                "pending_handshakes_per_host_max",
                self.pending_handshakes_per_host_max,
                "must not exceed pending_handshakes_max",
            )
        if self.handshake_frame_bytes_max > self.frame_bytes_max:
            raise P2PConfigError(
                "handshake_frame_bytes_max",
                self.handshake_frame_bytes_max,
                "must not exceed frame_bytes_max",
            )
