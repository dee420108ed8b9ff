"""runtime/metrics.py: the rejected-messages label takes only the reasons' enums (decode,
replica, the node's budgets), one spelling per reason, never free text."""

from __future__ import annotations

import pytest

from consensus.errors import DecodeReason, RejectReason
from runtime.metrics import MESSAGE_REJECTIONS, NodeMetrics, PeerRefusal


def _samples(metrics: NodeMetrics) -> dict[str, float]:
    return {s.labels["reason"]: s.value for family in metrics.registry.collect()
            if family.name == "gridchain_rejected_messages" for s in family.samples if s.name.endswith("_total")}


def test_each_reason_kind_counts_under_its_one_spelling() -> None:
    metrics = NodeMetrics("node0")
    metrics.message_rejected(DecodeReason.UNKNOWN_SENDER)
    metrics.message_rejected(RejectReason.UNKNOWN_SENDER)  # the same reason, the same label
    metrics.message_rejected(PeerRefusal.RELAY_RATE, 5)
    assert _samples(metrics) == {"unknown-sender": 2.0, "relay-rate": 5.0}
    assert {"relay-rate", "relay-backlog-full", "bad-relay-message", "clock-ahead",
            "snapshot-rate"} <= MESSAGE_REJECTIONS
    assert len(MESSAGE_REJECTIONS) < len(DecodeReason) + len(RejectReason) + len(PeerRefusal)


def test_free_text_never_becomes_a_label() -> None:
    metrics = NodeMetrics("node0")
    with pytest.raises(AssertionError):
        metrics.message_rejected("bad-block: height 17")  # type: ignore[arg-type]  # what the type forbids, at run time
    assert _samples(metrics) == {}
