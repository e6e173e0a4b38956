"""Latency histograms merge without loss, and repetition spread is computed as documented."""

from __future__ import annotations

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.results.metrics import (
    HIGH_SPREAD_LIMIT, HIGHEST_US, HistogramError, Spread, decode_histogram, encode_histogram,
    merge_histograms, new_histogram, percentiles, record_latency, summarize,
)

latencies = st.lists(st.integers(min_value=1, max_value=HIGHEST_US), max_size=300)


def histogram_of(values: list[int]) -> HdrHistogram:
    histogram = new_histogram()
    for value in values:
        record_latency(histogram, value)
    return histogram


@settings(max_examples=60, deadline=None)
@given(first=latencies, second=latencies)
def test_merge_is_lossless(first: list[int], second: list[int]) -> None:
    whole = histogram_of(first + second)
    merged = merge_histograms([encode_histogram(histogram_of(first)),
                               encode_histogram(histogram_of(second))])
    assert merged.get_total_count() == len(first) + len(second)
    assert percentiles(merged) == percentiles(whole)
    for percentile in (0.1, 1, 25, 50, 75, 90, 99, 99.9, 99.99, 100):
        assert merged.get_value_at_percentile(percentile) == whole.get_value_at_percentile(percentile)


@settings(max_examples=40, deadline=None)
@given(values=latencies)
def test_encode_decode_round_trip(values: list[int]) -> None:
    original = histogram_of(values)
    decoded = decode_histogram(encode_histogram(original))
    assert decoded.get_total_count() == original.get_total_count()
    assert percentiles(decoded) == percentiles(original)
    assert encode_histogram(decoded) == encode_histogram(original)


def test_encoded_histogram_is_json_safe_text() -> None:
    text = encode_histogram(histogram_of([100, 200]))
    assert isinstance(text, str) and text.isascii() and text.startswith("HISTF")


def test_merge_of_nothing_is_empty() -> None:
    assert merge_histograms([]).get_total_count() == 0


def test_percentiles_of_known_values() -> None:
    result = percentiles(histogram_of(list(range(1, 1001))))  # 1..1000 us, each once
    assert result == {"p50_us": 500, "p90_us": 900, "p99_us": 990, "p999_us": 999,
                      "max_us": 1000, "mean_us": pytest.approx(500.5, rel=1e-3)}


def test_percentiles_of_empty_histogram_are_zero() -> None:
    assert percentiles(new_histogram()) == {
        "p50_us": 0, "p90_us": 0, "p99_us": 0, "p999_us": 0, "max_us": 0, "mean_us": 0.0}


@pytest.mark.parametrize("micros, recorded", [
    (0, 1), (0.4, 1), (1.6, 2), (1500, 1500), (HIGHEST_US * 10, HIGHEST_US),
], ids=["zero-to-lowest", "below-one-to-lowest", "rounded", "in-range", "beyond-range-clamped"])
def test_record_latency_clamps_into_range(micros: float, recorded: int) -> None:
    histogram = histogram_of([])
    record_latency(histogram, micros)
    assert histogram.get_total_count() == 1
    assert histogram.values_are_equivalent(histogram.get_max_value(), recorded)


@pytest.mark.parametrize("text", ["", "not base64!", "SElTVA==", "HISTFAAAAB", "x" * 100],
                         ids=["empty", "not-base64", "base64-not-histogram", "truncated", "junk"])
def test_decode_refuses_what_is_not_a_histogram(text: str) -> None:
    with pytest.raises(HistogramError, match="not an encoded histogram"):
        decode_histogram(text)


def test_merge_refuses_a_histogram_wider_than_ours() -> None:
    wide = HdrHistogram(1, 3_600_000_000, 3)
    wide.record_value(3_000_000_000)
    with pytest.raises(HistogramError, match="beyond"):
        merge_histograms([encode_histogram(wide)])


@pytest.mark.parametrize("values, expected", [
    ([100.0], Spread(median=100.0, min=100.0, max=100.0, spread=0.0)),
    ([90.0, 100.0, 110.0], Spread(median=100.0, min=90.0, max=110.0, spread=0.2)),
    ([100.0, 104.0], Spread(median=102.0, min=100.0, max=104.0, spread=4.0 / 102.0)),
    ([5.0, 1.0, 3.0, 2.0], Spread(median=2.5, min=1.0, max=5.0, spread=1.6)),
    ([0.0, 0.0, 1.0], Spread(median=0.0, min=0.0, max=1.0, spread=0.0)),
    ([7, 7, 7], Spread(median=7, min=7, max=7, spread=0.0)),
], ids=["one-value-has-no-spread", "odd-count-median", "even-count-median-is-mean-of-middle",
        "unsorted-input", "zero-median-has-no-spread", "identical-values"])
def test_summarize(values: list[float], expected: Spread) -> None:
    assert summarize(values) == expected


@pytest.mark.parametrize("values, high", [
    ([100.0, 110.0], False),  # spread 10/105 < 10%
    ([100.0, 100.0, 110.0], False),  # spread exactly 10%: not over it
    ([100.0, 100.0, 111.0], True),
    ([100.0, 50.0, 100.0], True),
    ([100.0], False),
], ids=["under-threshold", "at-threshold-is-not-high", "just-over-threshold",
        "low-outlier", "single-repetition"])
def test_high_spread_flag(values: list[float], high: bool) -> None:
    assert summarize(values).high_spread is high
    assert HIGH_SPREAD_LIMIT == 0.10


def test_summarize_needs_a_value() -> None:
    with pytest.raises(ValueError):
        summarize([])
