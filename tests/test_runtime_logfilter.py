"""Repeated log lines are rate limited by template and counted; the next line after a
window says how many were dropped (issue 10: 196 MB of accept tracebacks)."""

from __future__ import annotations

import io
import logging

from prometheus_client import CollectorRegistry, generate_latest

from runtime.logfilter import RepeatFilter, SuppressedCollector


def test_a_flood_of_one_template_writes_a_burst_then_a_summary() -> None:
    now = [0.0]
    repeats = RepeatFilter(burst_max=3, window_s=10, clock=lambda: now[0])
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(repeats)
    logger = logging.getLogger("test.flood")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for port in range(1000):
            logger.warning("handshake from 127.0.0.1:%d refused: %s", port, "busy")
        logger.warning("a different line")
        assert out.getvalue().count("refused") == 3 and "a different line" in out.getvalue()
        now[0] = 11.0
        logger.warning("handshake from 127.0.0.1:%d refused: %s", 5, "busy")
        last = out.getvalue().splitlines()[-1]
        assert last == "handshake from 127.0.0.1:5 refused: busy [997 more like this suppressed in the last 10 s]"
        registry = CollectorRegistry()
        registry.register(SuppressedCollector(repeats))
        assert 'gridchain_log_lines_suppressed_total{logger="test.flood"} 997.0' in generate_latest(registry).decode()
    finally:
        logger.removeHandler(handler)
