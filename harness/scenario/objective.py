"""A rate search's scenario keys: what it holds each backend to ([load] slo) and the range it
searches ([load] rate = { search = [LOW, HIGH], ... }), read into Slo and RateSearch with the
scenario's errors (file, key, reason). harness.run.search does the searching."""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.scenario.fields import _show, _Table


@dataclass(frozen=True)
class Slo:
    """[load] slo: what a rate search holds each backend to, on every probe and repetition."""

    p99_ms: float  # the coordinated-omission-corrected p99 (from each request's intended send)
    error_share: float = 0.001  # answers not 2xx/3xx and failed requests, over all attempts


@dataclass(frozen=True)
class RateSearch:
    """[load] rate = { search = [LOW, HIGH], ... }: the highest offered rate within the slo,
    found by probing (harness.run.search) instead of a fixed sweep."""

    low: float
    high: float
    precision: float = 0.1  # stop once the highest pass and the lowest fail are this close
    budget_s: float = 60.0  # the probes of one backend and request, warm-ups and windows


def read_search(table: _Table) -> RateSearch:
    """rate = { search = [LOW, HIGH], precision = 0.1, budget = "60s" }."""
    table.allow("search", "precision", "budget")
    bounds = table.value("search", list, "[LOW, HIGH] offered req/s, e.g. [100, 200000]", default=None)
    if bounds is None:
        table.fail("search", "required in a rate table: the range to search, e.g. search = [100, 200000]")
    if len(bounds) != 2 or any(isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b <= 0
                               for b in bounds):
        table.fail("search", f"must be [LOW, HIGH], two positive req/s; got {_show(bounds)}")
    low, high = (float(b) for b in bounds)
    if low >= high:
        table.fail("search", f"LOW must be below HIGH; got [{low:g}, {high:g}]")
    precision = table.data.get("precision", 0.1)
    if isinstance(precision, bool) or not isinstance(precision, (int, float)) or not 0.01 <= precision <= 1:
        table.fail("precision", f"must be between 0.01 and 1 (the relative gap at which the search stops); "
                                f"got {_show(precision)}")
    return RateSearch(low=low, high=high, precision=float(precision),
                      budget_s=table.duration("budget", default="60s", positive=True))


def read_slo(table: _Table) -> Slo:
    """slo = { p99_ms = 10, error_share = 0.001 }."""
    table.allow("p99_ms", "error_share")
    p99 = table.data.get("p99_ms")
    if p99 is None:
        table.fail("p99_ms", "required: the p99 latency objective in ms, e.g. p99_ms = 10")
    if isinstance(p99, bool) or not isinstance(p99, (int, float)) or not math.isfinite(p99) or p99 <= 0:
        table.fail("p99_ms", f"must be a positive number of ms; got {_show(p99)}")
    share = table.data.get("error_share", 0.001)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
        table.fail("error_share", f"must be a share between 0 and 1, e.g. 0.001 for 0.1%; got {_show(share)}")
    return Slo(p99_ms=float(p99), error_share=float(share))
