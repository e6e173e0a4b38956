"""Latency histograms and repetition statistics.

Latencies are microseconds in HdrHistogram (Locust rounds to whole milliseconds, so its
own percentiles are never the source). Histograms travel between processes as the
standard base64 "HISTFAA..." text, and merging decoded histograms is lossless: the
merged counts are exactly those of one histogram that saw every value.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from hdrh.histogram import HdrHistogram

LOWEST_US = 1  # a loopback round trip is tens of us; 1 us is the finest we can tell apart
HIGHEST_US = 60_000_000  # 60 s: longer than any per-request timeout a scenario should use
SIGNIFICANT_FIGURES = 3  # 0.1% resolution: 1 us at 1 ms, 1 ms at 1 s

# Measurement rule 4: repetitions further apart than 10% of their median are
# flagged "high-spread"; the step's median is then less trustworthy than usual.
HIGH_SPREAD_LIMIT = 0.10

# The percentiles every step reports, as result keys.
PERCENTILE_KEYS = {"p50_us": 50.0, "p90_us": 90.0, "p99_us": 99.0, "p999_us": 99.9}


class HistogramError(ValueError):
    """Text that is not an encoded HdrHistogram."""


def new_histogram() -> HdrHistogram:
    """An empty latency histogram, 1 us to 60 s at 3 significant digits."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def record_latency(histogram: HdrHistogram, micros: float) -> None:
    """Record one latency, clamped into the histogram's range.

    HdrHistogram silently drops a value it cannot hold; a clamped value at least keeps the
    count right (and a 60 s latency is a timeout anyway)."""
    histogram.record_value(min(max(round(micros), LOWEST_US), HIGHEST_US))


def encode_histogram(histogram: HdrHistogram) -> str:
    """The compressed base64 text form, safe in JSON."""
    encoded: bytes = histogram.encode()  # hdrh ships no types: its encode() returns the base64 bytes
    return encoded.decode("ascii")


def decode_histogram(text: str) -> HdrHistogram:
    """The histogram back from encode_histogram's text; HistogramError if it is not one."""
    if not isinstance(text, str) or not text:
        raise HistogramError(f"not an encoded histogram: {text!r:.40}")
    try:
        return HdrHistogram.decode(text)
    except Exception as exc:  # hdrh raises its own, base64's, zlib's and ctypes' errors
        raise HistogramError(f"not an encoded histogram ({exc}): {text!r:.40}") from None


def merge_histograms(encoded: Iterable[str]) -> HdrHistogram:
    """One histogram holding every value of the encoded ones (empty if there are none)."""
    merged = new_histogram()
    for text in encoded:
        part = decode_histogram(text)
        try:
            merged.add(part)
        except IndexError:  # another tool's histogram with a wider range than ours
            raise HistogramError(f"histogram reaches {part.get_max_value()} us, "
                                 f"beyond {HIGHEST_US} us") from None
    return merged


def percentiles(histogram: HdrHistogram) -> dict[str, float]:
    """p50_us, p90_us, p99_us, p999_us, max_us and mean_us; all 0 for an empty histogram.

    Each value is the top of its HdrHistogram bucket, so a decoded or merged histogram
    reports exactly what the original did."""
    if histogram.get_total_count() == 0:
        return {**{key: 0 for key in PERCENTILE_KEYS}, "max_us": 0, "mean_us": 0.0}
    values = histogram.get_percentile_to_value_dict(list(PERCENTILE_KEYS.values()))
    return {
        **{key: values[percentile] for key, percentile in PERCENTILE_KEYS.items()},
        "max_us": histogram.get_max_value(),
        "mean_us": histogram.get_mean_value(),
    }


@dataclass(frozen=True)
class Spread:
    """How far apart the repetitions of one step are: spread = (max - min) / median."""

    median: float
    min: float
    max: float
    spread: float

    @property
    def high_spread(self) -> bool:
        return self.spread > HIGH_SPREAD_LIMIT


def summarize(values: Sequence[float]) -> Spread:
    """Median, range and relative spread of one step's repetitions (at least one value)."""
    if not values:
        raise ValueError("summarize() needs at least one value")
    median = statistics.median(values)
    low, high = min(values), max(values)
    spread = (high - low) / abs(median) if len(values) > 1 and median else 0.0
    return Spread(median=median, min=low, max=high, spread=spread)
