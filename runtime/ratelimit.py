"""A token bucket: at most `rate_per_s` units a second on average, `burst` at once.

Used where a count of messages per frame is bounded but their rate is not: a peer may
repeat a bounded `tx_get` as fast as it can write, and each answer costs this node a
lookup and an encode per hash (issue 10). The caller passes the time (monotonic ms), so
the bucket is plain arithmetic and testable without a clock.
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate_per_s: int, burst: int, now_ms: int) -> None:
        if rate_per_s < 1 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and burst")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens_milli = burst * 1000  # thousandths of a unit: integer refill per ms
        self._updated_ms = now_ms

    def take(self, units: int, now_ms: int) -> bool:
        """Spend `units` if the bucket holds them; False (and nothing spent) otherwise."""
        elapsed = max(0, now_ms - self._updated_ms)
        self._updated_ms = max(self._updated_ms, now_ms)
        self._tokens_milli = min(self.burst * 1000, self._tokens_milli + elapsed * self.rate_per_s)
        if units * 1000 > self._tokens_milli:
            return False
        self._tokens_milli -= units * 1000
        return True

    def available(self, now_ms: int) -> int:
        """Whole units that `take` would grant now."""
        elapsed = max(0, now_ms - self._updated_ms)
        return min(self.burst * 1000, self._tokens_milli + elapsed * self.rate_per_s) // 1000
