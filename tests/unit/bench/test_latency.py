"""S6's summary of latencies: the warm-up is the first tenth in arrival order, not the fastest
tenth, and p99 is read from what remains."""

from __future__ import annotations

from bench.scenarios import latency_percentiles_ms


def test_the_first_tenth_in_arrival_order_is_dropped_as_warm_up() -> None:
    # 100 samples: a slow start (cold connection), then 1..90 us in shuffled order.
    warm_up = [5_000_000] * 10  # 5 ms each
    steady = [((i * 37) % 90 + 1) * 1_000 for i in range(90)]
    assert latency_percentiles_ms(warm_up + steady) == (0.046, 0.09)


def test_slow_samples_after_the_warm_up_count_towards_p99() -> None:
    steady = [50_000] * 1_000
    steady[500:520] = [2_000_000] * 20  # a 2 ms stall in the middle: 2% of the samples
    p50, p99 = latency_percentiles_ms([1] * 112 + steady) or (0.0, 0.0)
    assert p50 == 0.05
    assert p99 == 2.0


def test_no_samples_give_no_percentiles() -> None:
    assert latency_percentiles_ms([]) is None
    assert latency_percentiles_ms([7_000]) == (0.007, 0.007)  # fewer than ten: none dropped
