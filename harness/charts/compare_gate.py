"""compare's gate for CI (--fail-on-regression PCT): which comparisons are regressions, and
which it cannot judge. A level is a regression when its ratio is significant (compare_stats)
and worse than the base by more than PCT percent: throughput below 1 - PCT/100, p99 above
1 + PCT/100; a backend that ran in the base and failed in a later run is one too, once."""

from __future__ import annotations

from dataclasses import dataclass

from harness.charts.compare import P99, THROUGHPUT, Cell, Comparison, Failure, Row


@dataclass(frozen=True)
class Regression:
    """A level where a later run is significantly worse than the base by more than the
    threshold (row and cell), or a backend that failed in it (failure)."""

    row: Row | None = None
    cell: Cell | None = None
    failure: Failure | None = None

    def line(self) -> str:
        if self.failure is not None:
            return f"{self.failure.backend} in {self.failure.run}: failed ({self.failure.error})"
        assert self.row is not None and self.cell is not None and self.cell.ratio is not None
        ratio = self.cell.ratio
        what = "p99" if self.row.measure == P99 else self.row.unit
        return (f"{self.row.backend} at {self.row.load}, {what} in {self.cell.run}: "
                f"{ratio.value:.2f}x [{ratio.interval()}] ({self.cell.verdict})")


def regressions(comparison: Comparison, pct: float) -> list[Regression]:
    """The gate: each failure, then each level significantly worse than the base by more
    than pct percent."""
    return [Regression(failure=failure) for failure in comparison.failures] + [
        Regression(row, cell) for row in comparison.rows for cell in row.others
        if cell.ratio is not None and cell.ratio.significant
        and (cell.ratio.value < 1 - pct / 100 if row.measure == THROUGHPUT else cell.ratio.value > 1 + pct / 100)]


def untested(comparison: Comparison) -> int:
    """Comparisons the gate cannot judge: a side with a single repetition."""
    return sum(cell.ratio is not None and cell.ratio.significant is None
               for row in comparison.rows for cell in row.others)


def missing(comparison: Comparison) -> int:
    """Comparisons the gate cannot judge: a level the base has and a later run lacks (not
    run, or no value), its backend not failed there."""
    return sum(row.base.status == "ok" and cell.status == "missing" for row in comparison.rows for cell in row.others)
