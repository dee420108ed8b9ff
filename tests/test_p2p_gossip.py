"""Gossip de-duplication LRU and P2PConfig validation."""

from __future__ import annotations

import pytest

from p2p.config import P2PConfig
from p2p.errors import P2PConfigError
from p2p.gossip import GossipSeen


def test_delivery_is_reported_once_per_id() -> None:
    seen = GossipSeen(10)
    assert seen.first_delivery(b"a")
    assert not seen.first_delivery(b"a")
    assert seen.first_delivery(b"b")


def test_forward_is_independent_of_delivery_but_implies_it() -> None:
    seen = GossipSeen(10)
    # Received from a peer, then relayed by the node once it checked the item.
    assert seen.first_delivery(b"a")
    assert seen.first_forward(b"a")
    assert not seen.first_forward(b"a")
    # Gossiped by this node first: a copy coming back is not delivered to it.
    assert seen.first_forward(b"b")
    assert not seen.first_delivery(b"b")


def test_capacity_bounds_memory_and_evicts_least_recently_seen() -> None:
    seen = GossipSeen(3)
    for item in (b"a", b"b", b"c"):
        seen.first_delivery(item)
    seen.first_delivery(b"a")  # refreshes a: b is now the oldest
    seen.first_delivery(b"d")
    assert len(seen) == 3
    assert seen.first_delivery(b"b")  # forgotten, so new again
    assert not seen.first_delivery(b"a")


def test_config_defaults_are_valid_and_frozen() -> None:
    config = P2PConfig()
    assert config.frame_bytes_max == 4 * 1024 * 1024
    with pytest.raises(AttributeError):
        config.frame_bytes_max = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"peer_send_queue_max": 0}, "peer_send_queue_max"),
        ({"idle_timeout_ms": -5}, "idle_timeout_ms"),
        ({"reconnect_backoff_ms_min": 10, "reconnect_backoff_ms_max": 5}, "reconnect_backoff_ms_min"),
        ({"frame_bytes_max": 100, "handshake_frame_bytes_max": 200}, "handshake_frame_bytes_max"),
        ({"gossip_seen_max": True}, "gossip_seen_max"),
    ],
)
def test_config_rejects_out_of_range_values(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(P2PConfigError) as info:
        P2PConfig(**kwargs)
    assert info.value.field == field
