"""Logging of every gridchain process, set up in one place: text or JSON lines on stdout
(node.toml [node] log_format), and runtime/logfilter.py's limit on repeated lines on the
handler, so a flood of rejected input costs a few lines.

Rejections are logged with their reason as a field (`extra={"reason": r}`): the JSON
format carries it as "reason", so a log pipeline can count rejections by reason.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from runtime.logfilter import install

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ms), level, logger, msg, and reason when the
    record has one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        reason = getattr(record, "reason", None)
        if reason is not None:
            entry["reason"] = reason
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Root logging for this process: one stdout handler, the repeat limit on it."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    install()
