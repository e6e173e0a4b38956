"""The Universal Scalability Law fitted to one backend's closed-loop throughput against users.

X(N) = λN / (1 + σ(N−1) + κN(N−1)): λ is the throughput of one user, σ the contention (the
share of the work that queues for something shared: 0 scales linearly, 1 not at all) and κ
the coherency cost (every pair of users paying to agree: past the peak, more users lower
throughput). The fit is scipy's curve_fit; a fit is skipped, with the reason, when the data
cannot pin three parameters down or the curve does not follow the data (R²).

Pure: the caller picks the points (one median per level, say) and decides what a
driver-bound or noisy level means for the sentence; nothing here reads a step record.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from harness.results.words import counted

PARAMETERS = 3  # λ, σ, κ
# Three parameters through three levels fit any three points exactly (R² = 1 says nothing);
# a fourth distinct level is the least that can show whether the law holds.
MIN_LEVELS = PARAMETERS + 1
# Below this share of throughput's variance explained, the curve is not the data's shape and
# σ, κ and the peak would be read off a curve nobody measured. 0.9 is a common bar for a
# model with this few parameters; with a level or two to spare, any smooth data clears it.
MIN_R2 = 0.9
# σ or κ is reported as 0 when its term adds less than this to the denominator at the largest
# measured N (σ(N−1) or κN(N−1) under 1%): the points cannot tell it from zero, and a peak
# it implies would lie ~10x or more beyond the data, where a fit through them predicts
# nothing. The bounded optimiser leaves such a term at 1e-12 or 1e-20 rather than 0 (linear
# data), and sqrt((1−σ)/1e-20) users or λ/1e-17 req/s is not a finding.
NEGLIGIBLE_TERM = 0.01
# A peak below this many users rounds to one user or none: the law says adding users only
# costs (σ ≈ 1, the work is all serial, and κ > 0).
ONE_USER = 1.5
# Contention this close to 1 means the work is serial: X(N) stays near λ whatever N, and a
# "peak" from a small κ (iterative: σ = 0.998, a peak near 3 users) describes noise on a flat line.
SERIAL_SIGMA = 0.9
# curve_fit's evaluation budget: the default (100 x (parameters + 1)) can stop the bounded
# solver short on badly scaled throughput (100k req/s beside κ ~ 1e-5).
MAX_EVALUATIONS = 10_000


def usl(n: Any, lam: float, sigma: float, kappa: float) -> Any:
    """X(N), for a number or a numpy array of user counts."""
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass(frozen=True)
class UslFit:
    """The fit, or why there is none. A poor fit keeps its parameters and R² (the reason
    quotes it); a fit that could not be made has None for all of them."""

    ok: bool
    reason: str | None  # why the fit is skipped; None when ok
    lam: float | None  # req/s of one user
    sigma: float | None  # contention, 0..1
    kappa: float | None  # coherency, >= 0
    r2: float | None  # on throughput, over the points fitted
    peak_users: float | None  # N* = sqrt((1−σ)/κ); None when κ ≈ 0 (no peak: X rises toward λ/σ);
    # under 1 when σ ≈ 1: throughput is highest at one user and only falls
    largest_users: float | None = None  # the most users measured: a peak beyond them is extrapolated

    def sentence(self, backend: str) -> str:
        """One sentence with the numbers: the fit and where it peaks, or why it is skipped."""
        if not self.ok:
            return f"no USL fit for {backend}: {self.reason}"
        assert self.lam is not None and self.sigma is not None and self.kappa is not None and self.r2 is not None
        fitted = (f"{backend} fits the USL with contention σ={self.sigma:.2g} and coherency κ={self.kappa:.2g} "
                  f"(R²={self.r2:.2f})")
        if self.peak_users is not None and self.peak_users < ONE_USER:
            return f"{fitted}: throughput is highest at one user and falls as users are added"
        if self.sigma >= SERIAL_SIGMA:
            return (f"{fitted}: the work is serial, throughput stays near one user's {self.lam:,.0f} req/s "
                    "and added users only queue")
        if self.peak_users is not None and self.largest_users and self.peak_users > self.largest_users:
            return (f"{fitted}: throughput would peak near {self.peak_users:,.0f} users, beyond the "
                    f"{self.largest_users:,.0f} measured (an extrapolation)")
        if self.peak_users is not None:
            return f"{fitted}: throughput peaks near {self.peak_users:,.0f} users"
        if self.sigma > 0:
            return f"{fitted}: no peak, throughput keeps rising toward λ/σ = {self.lam / self.sigma:,.0f} req/s"
        return f"{fitted}: no peak, throughput rises linearly at {self.lam:,.0f} req/s per user"

    def curve(self, n: Iterable[float]) -> list[float]:
        """X(N) at each N, for drawing. A poor fit has a curve too; no fit at all has none."""
        if self.lam is None or self.sigma is None or self.kappa is None:
            raise ValueError(f"no USL curve: {self.reason}")
        return [float(usl(float(users), self.lam, self.sigma, self.kappa)) for users in n]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_usl(users: Sequence[float], throughput: Sequence[float | None]) -> UslFit:
    """Fit X(N) to (users, throughput) points: one per level, or several (repetitions).

    A None or NaN throughput is no measurement and is dropped; a zero is kept, since a
    server that answered nothing at a level (a stall) measured exactly that."""
    if len(users) != len(throughput):
        raise ValueError(f"{len(users)} user counts but {len(throughput)} throughputs")
    points = [(float(n), float(x)) for n, x in zip(users, throughput) if x is not None and math.isfinite(x)]
    if any(not n >= 1 for n, _ in points):
        raise ValueError(f"users must be at least 1: {[n for n, _ in points]}")
    levels = len({n for n, _ in points})
    if levels < MIN_LEVELS:
        return _skip(f"{counted(levels, 'user level')}, and the fit has {PARAMETERS} parameters "
                     f"(needs at least {MIN_LEVELS})")
    n, x = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    if np.all(x == x[0]):
        return _skip(f"throughput is {x[0]:,.0f} req/s at every level: no variance for R² to judge")
    # scipy is imported here, not with the module: it costs every concurbench command 0.9 s,
    # and only a run with 4 or more user levels fits a curve.
    from scipy.optimize import OptimizeWarning, curve_fit

    try:
        with warnings.catch_warnings():
            # raised when the covariance cannot be estimated; only the parameters are used
            warnings.simplefilter("ignore", OptimizeWarning)
            (lam, sigma, kappa), _ = curve_fit(usl, n, x, p0=_initial_guess(n, x),
                                               bounds=([0.0, 0.0, 0.0], [np.inf, 1.0, np.inf]),
                                               max_nfev=MAX_EVALUATIONS)
    # RuntimeError: no convergence within the budget; ValueError: what curve_fit refuses to start
    # from (a starting point outside the bounds, say), which the checks above should prevent
    except (RuntimeError, ValueError) as error:
        return _skip(f"the fit failed ({error})")
    if not all(math.isfinite(v) for v in (lam, sigma, kappa)):
        return _skip(f"the fit gave non-finite parameters (λ={lam}, σ={sigma}, κ={kappa})")
    largest = float(n.max())
    sigma = float(sigma) if sigma * (largest - 1) >= NEGLIGIBLE_TERM else 0.0
    kappa = float(kappa) if kappa * largest * (largest - 1) >= NEGLIGIBLE_TERM else 0.0
    residual = float(np.sum((x - usl(n, lam, sigma, kappa)) ** 2))  # of the curve as reported
    r2 = 1 - residual / float(np.sum((x - x.mean()) ** 2))
    peak = math.sqrt((1 - sigma) / kappa) if kappa > 0 else None
    fit = UslFit(ok=True, reason=None, lam=float(lam), sigma=float(sigma), kappa=float(kappa), r2=r2,
                 peak_users=peak, largest_users=largest)
    if r2 < MIN_R2:
        return replace(fit, ok=False, reason=f"poor fit (R²={r2:.2f} < {MIN_R2:g})")
    return fit


def _initial_guess(n: np.ndarray, x: np.ndarray) -> list[float]:
    """λ from the fewest users' X/N (the law's own reading of one user's rate); σ and κ small
    but inside their bounds, with κ scaled so that κN² is ~1% at the largest N."""
    fewest = n == n.min()
    lam = float(x[fewest].mean() / n.min())
    if lam <= 0:  # nothing answered at the fewest users: start from the best rate per user
        lam = float(max((x / n).max(), 1e-9))
    return [lam, 0.05, 0.01 / float(n.max()) ** 2]


def _skip(reason: str) -> UslFit:
    return UslFit(ok=False, reason=reason, lam=None, sigma=None, kappa=None, r2=None, peak_users=None)
