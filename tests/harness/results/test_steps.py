"""Step records' levels: what makes repetitions one load level, and the high-spread flag."""

from __future__ import annotations

import pytest

from harness.results.model import steps_of
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
    (old,) = steps_of([{"backend": "asyncio", "users": 4}])
    assert level_key(old) == ("asyncio", 4, None, 0)


def test_median_of_leaves_out_steps_without_the_field() -> None:
    steps = steps_of([{"backend": "a", "users": 1, "p99_us": 10, "server": {"rss_bytes": 1}},
                      {"backend": "a", "users": 1, "p99_us": None},
                      {"backend": "a", "users": 1, "p99_us": 30, "server": {}}])
    assert median_of(s.p99_us for s in steps) == 20 and median_of(s.server.rss_bytes for s in steps) == 1
    assert median_of(s.good_rps for s in steps) is None


# --- step_record's judgement: goodput, failures, flags ----------------------------------

from harness.drivers.spec import DriverResult, ErrorCounts, Cycles  # noqa: E402
from harness.results.steps import (CONTENDED, CONTENDED_PERCENT, DRIVER_BOUND, LITTLES_LAW, NOISY,  # noqa: E402
                                   littles_law, step_record)


def result(*, users: int = 8, requests: int = 800, good: int = 800, cycles: Cycles | None = None,
           errors: ErrorCounts = ErrorCounts(), driver_cpu: float = 50.0, rate: float | None = None) -> dict:
    """A 1 s window's DriverResult as a dict: by default 8 users on 10 ms cycles."""
    return DriverResult(
        requests=requests, good_requests=good, errors=errors, unfinished=users, unfinished_max_us=10_000,
        duration_s=1.0, rps=float(requests), good_rps=float(good), p50_us=10_000, p90_us=10_000, p99_us=10_000,
        p999_us=10_000, max_us=10_000, mean_us=10_000.0, histogram="", timeseries=(), users=users,
        keep_alive=True, driver_cpu_percent=driver_cpu, rate=rate,
        cycles=cycles if cycles is not None else Cycles(requests, requests * 9_990, requests, requests * 10),
    ).to_dict()


def record(res: dict, *, server: dict | None = None, driver: dict | None = None) -> dict:
    return step_record("b", users=res["users"], idle_connections=0, repetition=0, result=res,
                       server=server or {}, driver=driver)


def test_a_healthy_closed_loop_step_has_no_flag() -> None:
    rec = record(result(), server={"steal_percent": 1.0}, driver={"cpu_percent": 60.0, "steal_percent": 0.5})
    assert rec["flags"] == []
    assert rec["littles"]["ratio"] == pytest.approx(1.0) and rec["littles"]["gap_us"] == 10.0


def test_starved_users_break_littles_law() -> None:
    # One user of 8 cycling every 10 ms: 100 answers in the window, the other 7 waiting.
    rec = record(result(requests=100, good=100))
    assert rec["littles"]["ratio"] == pytest.approx(1 / 8)
    assert rec["flags"] == [LITTLES_LAW]


def test_a_window_with_no_completion_breaks_it_too_and_open_loop_is_not_judged() -> None:
    assert record(result(requests=0, good=0, cycles=Cycles()))["flags"] == [LITTLES_LAW]
    open_loop = record(result(rate=800.0, requests=100, good=100))
    assert open_loop["littles"] is None and open_loop["flags"] == []


def test_within_what_a_windows_edges_can_cut_is_not_flagged() -> None:
    # 100 ms cycles in a 1 s window: one cycle per user at an edge is 10%; 5% + 10% allowed.
    law = littles_law(result(requests=88, good=88, cycles=Cycles(88, 88 * 99_990, 88, 88 * 10)))
    assert law["ratio"] == pytest.approx(1.1, abs=0.001) and law["tolerance"] == pytest.approx(0.15)
    assert record(result(requests=88, good=88, cycles=Cycles(88, 88 * 99_990, 88, 88 * 10)))["flags"] == []


@pytest.mark.parametrize("sampled, own, flagged", [
    ({"cpu_percent": 95.0}, 50.0, True),  # two workers sharing the driver CPU: only the sum shows it
    ({"cpu_percent": 60.0}, 95.0, True),  # one process allowed two CPUs: its own figure shows it
    ({"cpu_percent": 85.0}, 85.0, False),
    (None, 92.0, True),  # no sampling (a driver run alone): its own figure
])
def test_driver_bound_is_the_busiest_driver_cpu_or_the_driver_itself(sampled, own, flagged) -> None:
    rec = record(result(driver_cpu=own), driver=sampled)
    assert (DRIVER_BOUND in rec["flags"]) is flagged
    assert rec["driver"]["self_cpu_percent"] == own


@pytest.mark.parametrize("server, driver, flagged", [
    ({"steal_percent": 6.0}, {"steal_percent": 0.0}, True),
    ({"steal_percent": 0.0}, {"cpu_percent": 10.0, "steal_percent": 5.5}, True),
    ({"steal_percent": 5.0}, {"steal_percent": 4.9}, False),
    ({"steal_percent": None}, {"steal_percent": None}, False),  # /proc/stat unreadable: unknown, not noisy
])
def test_noisy_is_steal_over_5_percent_on_either_side(server, driver, flagged) -> None:
    assert (NOISY in record(result(), server=server, driver=driver)["flags"]) is flagged


@pytest.mark.parametrize("others, flags", [
    (5.1, [CONTENDED]),
    (5.0, []),  # at the threshold: not over it
    (None, []),  # not measured (no /proc/stat, or an older harness): unknown, not contended
], ids=["over-5%", "at-5%", "unknown"])
def test_contended_is_other_processes_over_5_percent_of_the_servers_cpus(others, flags) -> None:
    rec = record(result(), server={"steal_percent": 0.0, "others_percent": others})
    assert [flag for flag in rec["flags"] if flag in (CONTENDED, NOISY)] == flags
    assert CONTENDED_PERCENT == 5.0


def test_goodput_and_failures_are_kept_apart() -> None:
    # 100 answers of which 40 refused (503), plus 5 timeouts and 5 resets that got no answer.
    rec = record(result(requests=100, good=60, errors=ErrorCounts(timeout=5, reset=5, bad_status=40)))
    assert (rec["rps"], rec["good_rps"], rec["failures"]) == (100.0, 60.0, 10)
    assert rec["error_share"] == pytest.approx(50 / 110, abs=1e-6)


def test_an_unreadable_response_is_a_failure_not_an_answer() -> None:
    # 100 answers (40 refused) and 10 responses that could not be read: bad_status counts 50,
    # of which 10 never were answers. The share can then never pass 1.
    res = result(requests=100, good=60, errors=ErrorCounts(bad_status=50))
    res["answers_by_class"] = {"2xx": 60, "3xx": 0, "4xx": 0, "5xx": 40, "other": 0}
    rec = record(res)
    assert rec["failures"] == 10
    assert rec["error_share"] == pytest.approx(50 / 110, abs=1e-6)
    res = result(requests=0, good=0, errors=ErrorCounts(bad_status=30), cycles=Cycles())
    res["answers_by_class"] = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, "other": 0}
    assert record(res)["error_share"] == 1.0 and record(res)["failures"] == 30


# --- a server on the driver's CPU, and the GIL a free-threaded server said it had -----------

from harness.results.steps import (GIL_ON, SHARED_CPU, apply_runtime, driver_share)  # noqa: E402


def pinned(server_cpus: tuple[int, ...], by_cpu: dict[str, float]) -> dict:
    return step_record("b", users=8, idle_connections=0, repetition=0, result=result(), server={},
                       driver={"cpu_percent": max(by_cpu.values()), "cpu_percent_by_cpu": by_cpu},
                       server_cpus=server_cpus, cores=len(server_cpus))


@pytest.mark.parametrize(("server_cpus", "by_cpu", "share"), [
    pytest.param((0,), {"1": 12.0}, None, id="apart: no flag"),
    pytest.param((0, 1), {"1": 12.0}, 6.0, id="one of two server CPUs shared: half the driver's 12%"),
    pytest.param((0,), {"0": 8.0}, 8.0, id="one CPU for both"),
    pytest.param((0, 1, 2, 3), {"2": 10.0, "3": 10.0}, 5.0, id="two of four shared"),
])
def test_a_server_on_a_driver_cpu_is_flagged_with_the_drivers_share(server_cpus, by_cpu, share) -> None:
    rec = pinned(server_cpus, by_cpu)
    assert (SHARED_CPU in rec["flags"]) is (share is not None)
    assert rec["driver"].get("share_of_server_percent") == share
    assert driver_share(server_cpus, by_cpu) == share


def test_without_per_cpu_driver_figures_nothing_is_claimed() -> None:
    assert driver_share((0, 1), None) is None and driver_share((0, 1), {}) is None
    assert SHARED_CPU not in record(result())["flags"]


@pytest.mark.parametrize(("answer", "flagged"), [
    pytest.param({"python": "3.13.5", "free_threaded": True, "gil_enabled": True}, True, id="free-threaded, GIL on"),
    pytest.param({"python": "3.13.5", "free_threaded": True, "gil_enabled": False}, False, id="free-threaded, GIL off"),
    pytest.param({"python": "3.13.5", "free_threaded": False, "gil_enabled": True}, False, id="a GIL build"),
    pytest.param({"error": "GET /runtime: timed out"}, False, id="no answer"),
])
def test_a_free_threaded_server_whose_gil_was_on_is_flagged(answer: dict, flagged: bool) -> None:
    rec = record(result())
    assert rec["runtime"] is None  # until the server is asked
    apply_runtime(rec, answer)
    apply_runtime(rec, answer)  # asked twice, flagged once
    assert rec["runtime"] == answer and rec["flags"].count(GIL_ON) == (1 if flagged else 0)
