"""Log output: JSON lines when [node] log_format = "json", the rejection reason as a field,
and the repeat limit (runtime/logfilter.py) on the one handler configure_logging sets."""

from __future__ import annotations

import json
import logging

import pytest

from runtime.logfilter import REPEATS
from runtime.logs import configure_logging


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_level_logger_message_and_reason(capsys, restore_root) -> None:
    configure_logging("info", "json")
    log = logging.getLogger("gridchain.test")
    log.info("transaction 0x%s from RPC rejected: %s", "ab", "no account", extra={"reason": "unknown-sender"})
    log.debug("not at info")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "info" and entry["logger"] == "gridchain.test" and entry["reason"] == "unknown-sender"
    assert entry["msg"] == "transaction 0xab from RPC rejected: no account"
    assert entry["ts"].endswith("Z")


def test_one_handler_with_the_repeat_limit(restore_root) -> None:
    configure_logging("warning", "text")
    configure_logging("warning", "text")  # twice: still one handler
    root = logging.getLogger()
    assert len(root.handlers) == 1 and REPEATS in root.handlers[0].filters
    assert root.level == logging.WARNING
