"""Rate limit for repeated log lines. An attack once wrote 196 MB of identical accept
tracebacks and 20,975 warning lines: each (logger, message template) pair may write
`burst_max` lines per `window_s`; further ones are dropped and counted (per logger, in
/metrics as gridchain_log_lines_suppressed_total), and the first line of the pair written
after its window says how many were dropped.

The key is the template (`record.msg`, before the %-arguments are merged), so "handshake
from 127.0.0.1:40001 refused" and "... :40002 refused" count as the same line.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

BURST_MAX = 20  # lines per key and window: enough to see what happens, not to fill a disk
WINDOW_S = 60.0
KEYS_MAX = 4096  # templates tracked; the least recently seen are forgotten


@dataclass
class Window:
    start: float
    written: int = 0
    dropped: int = 0


class RepeatFilter(logging.Filter):
    def __init__(self, burst_max: int = BURST_MAX, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst_max = burst_max
        self.window_s = window_s
        self.clock = clock
        self.suppressed: Counter[str] = Counter()  # by logger name, since start
        self._windows: OrderedDict[tuple[str, str], Window] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window.start >= self.window_s:
            dropped = window.dropped if window is not None else 0
            window = self._windows[key] = Window(now)
            if dropped:
                # no "%" in the note: the record's %-arguments still format as before
                record.msg = f"{record.msg} [{dropped} more like this suppressed in the last {self.window_s:.0f} s]"
        self._windows.move_to_end(key)
        while len(self._windows) > KEYS_MAX:
            self._windows.popitem(last=False)
        if window.written < self.burst_max:
            window.written += 1
            return True
        window.dropped += 1
        self.suppressed[record.name] += 1
        return False


class SuppressedCollector(Collector):
    """Exports a RepeatFilter's counts into a node's registry."""

    def __init__(self, repeat_filter: RepeatFilter) -> None:
        self.repeat_filter = repeat_filter

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("gridchain_log_lines_suppressed", "Repeated log lines not written, by logger",
                                     labels=["logger"])
        for logger, count in sorted(self.repeat_filter.suppressed.items()):
            family.add_metric([logger], count)
        yield family


# One per process: every handler of the root logger shares it.
REPEATS = RepeatFilter()


def install() -> RepeatFilter:
    """Put REPEATS on every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        if REPEATS not in handler.filters:
            handler.addFilter(REPEATS)
    return REPEATS
