"""Step records' levels: what makes repetitions one load level, and the high-spread flag."""

from __future__ import annotations

import pytest

from harness.results.steps import HIGH_SPREAD, flag_high_spread, level_key, median_of


def step(rps: float, *, idle: int = 0, rate: float | None = None, rep: int = 0) -> dict:
    return {"backend": "selectors", "users": 8, "rate": rate, "idle_connections": idle, "repetition": rep,
            "status": "ok", "rps": rps, "flags": []}


@pytest.mark.parametrize(("steps", "flagged"), [
    pytest.param([step(1000), step(1010, rep=1)], [False, False], id="steady-level"),
    pytest.param([step(1000), step(2000, rep=1)], [True, True], id="spread-over-10-percent"),
    # c10k: the same backend and users at 0 and 10,000 idle connections are two levels, so
    # their different rates are not a spread between repetitions
    pytest.param([step(1000), step(1005, rep=1), step(500, idle=10_000), step(502, idle=10_000, rep=1)],
                 [False] * 4, id="idle-levels-are-apart"),
    pytest.param([step(1000), step(400, rate=500.0)], [False, False], id="open-loop-level-is-apart"),
])
def test_high_spread_is_judged_within_one_level(steps: list[dict], flagged: list[bool]) -> None:
    flag_high_spread(steps)
    assert [HIGH_SPREAD in s["flags"] for s in steps] == flagged


def test_level_key_reads_old_steps_without_idle_or_rate() -> None:
    assert level_key({"backend": "asyncio", "users": 4}) == ("asyncio", 4, None, 0)


def test_median_of_leaves_out_steps_without_the_field() -> None:
    steps = [{"p99_us": 10, "server": {"rss_bytes": 1}}, {"p99_us": None}, {"p99_us": 30, "server": {}}]
    assert median_of(steps, "p99_us") == 20 and median_of(steps, "rss_bytes", "server") == 1
    assert median_of(steps, "missing") is None
