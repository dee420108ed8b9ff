"""TokenBucket: the rate and burst it promises, in integer arithmetic."""

import pytest

from runtime.ratelimit import TokenBucket


def test_the_burst_is_available_at_once_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=100, burst=50, now_ms=0)
    assert bucket.take(50, now_ms=0) and not bucket.take(1, now_ms=0)
    assert not bucket.take(1, now_ms=9)  # 0.9 of a unit
    assert bucket.take(1, now_ms=10)
    assert bucket.available(now_ms=10_000) == 50  # never above the burst


def test_a_refused_take_spends_nothing_and_time_never_runs_back() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=3, now_ms=1_000)
    assert not bucket.take(4, now_ms=1_000)
    assert bucket.available(now_ms=1_000) == 3
    assert bucket.take(3, now_ms=500)  # an earlier time adds nothing and takes nothing back
    assert bucket.available(now_ms=1_000) == 0


def test_a_bucket_needs_a_positive_rate_and_burst() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s=0, burst=1, now_ms=0)
