"""P2PConfig validation."""

from __future__ import annotations

import pytest

from p2p import P2PConfig, P2PConfigError


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
        ({"read_bytes_max": True}, "read_bytes_max"),
        ({"encryption": 1}, "encryption"),
    ],
)
def test_config_rejects_out_of_range_values(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(P2PConfigError) as info:
        P2PConfig(**kwargs)
    assert info.value.field == field
