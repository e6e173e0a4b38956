"""The test compare applies: is a run's figure at one level really different from the base's?

The unit of evidence is the repetition. Each is a fresh server process in its own
interleaved round, so repetitions are independent of one another; the per-second samples
inside one are not: they share that process's heap, caches and neighbours, and drift
together. In the reference runs the repetitions' means differ 2 to 100 times more than their
per-second noise predicts, and a bootstrap over per-second samples finds two repetitions of
the same level in the same run "different" at 95% in 73 levels of 171 (5% would be right):
any test that treats seconds, or blocks of them, as the evidence calls ordinary drift
between repetitions a change of code. So each repetition gives one value (its good req/s,
its p99), and the ratio other/base is judged on the values' logarithms with Welch's t
interval (scipy.stats.ttest_ind, unequal variances):
- the logarithm turns the interval for a difference into one for a ratio (of geometric
  means), and suits figures that vary by a factor, not by a fixed amount;
- Student's t with Welch's few degrees of freedom is honest about three values: the
  interval is wide when they scatter and narrow when they agree. A rank test over
  repetitions (Mann-Whitney U, as benchstat does) cannot reach p < 0.05 with 3 against 3
  (its smallest two-sided p is 0.1), so at the default --repeat 3 it would call everything
  noise.
The interval is computed, not resampled: the same runs always get the same verdict, with no
seed to keep. What no test on two runs can see is the machine itself changing between them
(another tenant, a throttled CPU): that is what the gate's threshold and the refusal to mix
machines are for.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
TEST_NAME = "Welch's t interval on the logarithms of the repetitions' values (scipy.stats.ttest_ind)"


@dataclass(frozen=True)
class Ratio:
    """other / base (of the repetitions' geometric means), with its confidence interval."""

    value: float
    low: float | None  # None: not testable, a side has fewer than two repetitions
    high: float | None

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes 1; None when there is no interval."""
        if self.low is None or self.high is None:
            return None
        return not self.low <= 1 <= self.high

    def interval(self) -> str:
        """'0.91–0.97'; 'untested' without an interval."""
        return "untested" if self.low is None or self.high is None else f"{self.low:.2f}–{self.high:.2f}"


def _logs(values: Sequence[float]) -> np.ndarray:
    # log(1 + x): a stalled repetition at 0 req/s has no logarithm. Figures here are req/s
    # in the hundreds or more and latencies in µs, so the 1 moves a ratio by far less than
    # its printed precision.
    return np.log1p(np.asarray(values, dtype=float))


def geometric_mean(values: Sequence[float]) -> float:
    """What a row prints for a run: the centre the ratio is a ratio of."""
    return float(np.expm1(_logs(values).mean()))


def ratio_interval(base: Sequence[float], other: Sequence[float]) -> Ratio:
    """other / base with its two-sided CONFIDENCE interval; base and other each hold one
    value per repetition and must not be empty."""
    log_base, log_other = _logs(base), _logs(other)
    value = math.exp(log_other.mean() - log_base.mean())
    if len(log_base) < 2 or len(log_other) < 2:
        return Ratio(value, None, None)
    if np.ptp(log_base) == 0 and np.ptp(log_other) == 0:  # no noise at all: the shift is exact
        return Ratio(value, value, value)
    with warnings.catch_warnings():
        # scipy warns of "precision loss" when a side's repetitions are (nearly) all equal:
        # that side's variance is then (nearly) zero, which is what Welch's interval needs.
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        low, high = stats.ttest_ind(log_other, log_base, equal_var=False).confidence_interval(CONFIDENCE)
    return Ratio(value, math.exp(low), math.exp(high))
