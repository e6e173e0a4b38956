"""A step record: one measured window of one backend at one load level, as results.json
holds it; the load level that groups repetitions, and the median over them; and the flags
that judge a step (driver-bound, high-spread, littles-law, noisy, contended, shared-cpu, gil-on,
link-off, relay-bound).

Everything that summarises repetitions (the printed table, summary.csv, every chart, the
report, compare) groups the model's Steps with `group_levels` and takes medians with `median_of`;
the orchestrator builds the records themselves (step_record) as plain dicts for results.json.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from statistics import median
from typing import Any

from harness.results.metrics import summarize
from harness.results.model import Step, steps_of

# The kinds of failed request a step counts, as keys of its "errors" (and of a driver's).
ERROR_KINDS = ("connect", "timeout", "reset", "bad_status")
# A step whose driver used more than this share of its busiest CPU measured the driver,
# not the server: the figure is a floor and is flagged.
DRIVER_BOUND_PERCENT = 90.0
DRIVER_BOUND = "driver-bound"  # the flag
HIGH_SPREAD = "high-spread"  # the flag: the level's req/s spread is over metrics.HIGH_SPREAD_LIMIT
# Measurement rule 8: a closed-loop step whose users and throughput x cycle time (Little's
# law) disagree by more than this share (beyond what the window's edges explain, see
# littles_law) has something waiting that no percentile shows.
LITTLES_LAW_LIMIT = 0.05
LITTLES_LAW = "littles-law"  # the flag
# Measurement rule 11: a step in which the hypervisor took more than this share of the
# server's or the driver's CPUs (steal) measured the machine's neighbours too.
NOISY_STEAL_PERCENT = 5.0
NOISY = "noisy"  # the flag
# Measurement rule 11, the machine's side: a step in which processes other than the server's
# tree and the driver used more than this share of the server's CPUs (server.others_percent:
# busy time there from /proc/stat, less the server's and the driver's) measured a neighbour
# too, as much as steal takes from a step called noisy. Its own flag, not noisy: the hypervisor
# does not see it and a rerun elsewhere will not cure it; the process to stop is on this machine.
CONTENDED_PERCENT = 5.0
CONTENDED = "contended"  # the flag
# A step whose server CPUs include a driver CPU ([server] share_driver_cpus, or a one-CPU
# machine): the driver's share of the server's CPUs is recorded beside it...
SHARED_CPU = "shared-cpu"  # the flag
# ...and above this share the server lost enough CPU time to the driver that its figure may be
# low: as much as steal takes from a step called noisy.
SHARED_CPU_LOW_PERCENT = 5.0
# A step on a free-threaded build whose server said, when asked after it (GET /runtime), that
# its GIL was on: an extension imported late, or PYTHON_GIL=1. It measured threads under a GIL.
GIL_ON = "gil-on"  # the flag
# An emulated link ([network]) is measured just before each step's driver starts: a step whose
# round trip (or bandwidth, where one is set) measured more than this share off its setting ran
# on another link than the one it is filed under...
LINK_OFF_SHARE = 0.10
LINK_OFF = "link-off"  # the flag
# ...and one whose relay (the process that carries every packet) was busier than this on its
# CPU may have been paced by the relay, not the server.
RELAY_BOUND_PERCENT = 90.0
RELAY_BOUND = "relay-bound"  # the flag
# What each flag means, for the report and the printed table's legend.
FLAG_MEANINGS = {
    DRIVER_BOUND: f"the driver's busiest CPU was over {DRIVER_BOUND_PERCENT:g}% busy: the figure is the "
                  "driver's limit, a floor for the server",
    HIGH_SPREAD: "the repetitions' req/s are more than 10% apart: the median is less certain",
    LITTLES_LAW: f"users and throughput x cycle time disagree by more than {LITTLES_LAW_LIMIT:.0%} (plus "
                 "what a window's edges can cut: one cycle per window): requests waited that no percentile "
                 "shows (starved users, a stall); not checked for wrk, which does not say when each "
                 "connection sends",
    NOISY: f"CPU steal over {NOISY_STEAL_PERCENT:g}% on the server or driver CPUs: the hypervisor took "
           "CPU time from the measurement",
    CONTENDED: f"other processes of this machine (not the server, not the driver) used over {CONTENDED_PERCENT:g}% "
               "of the server's CPUs: the server shared its CPUs with them, so its figures may be low",
    SHARED_CPU: "the server's CPUs included a driver CPU (fewer CPUs than the sweep needs with the driver kept "
                "apart): the driver's share of the server's CPUs is shown beside it; over "
                f"{SHARED_CPU_LOW_PERCENT:g}% the figure may be low",
    GIL_ON: "a free-threaded build whose GIL was on when the server was asked after the step (GET /runtime): "
            "an extension imported late, or PYTHON_GIL=1; its threads ran under a GIL",
    LINK_OFF: f"the emulated link, measured just before the step, was more than {LINK_OFF_SHARE:.0%} off its "
              "setting (round trip, or bandwidth where one is set): the step ran on another link",
    RELAY_BOUND: f"the relay that carries the emulated link's packets was over {RELAY_BOUND_PERCENT:g}% busy "
                 "on its CPU: the link may have set the pace, not the server",
}


def link_flags(link: Mapping[str, Any]) -> list[str]:
    """What judges a step's emulated link (its "link" record): link-off, relay-bound."""
    flags = []
    rtt, measured = link["rtt_ms"], link.get("measured_rtt_ms")
    rate, measured_rate = link.get("bandwidth_bps"), link.get("measured_bandwidth_bps")
    if (rtt and measured is not None and abs(measured - rtt) > LINK_OFF_SHARE * rtt) or \
            (rate and measured_rate is not None and abs(measured_rate - rate) > LINK_OFF_SHARE * rate):
        flags.append(LINK_OFF)
    if (link.get("relay_cpu_percent") or 0.0) > RELAY_BOUND_PERCENT:
        flags.append(RELAY_BOUND)
    return flags


def littles_law(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """Closed loop: users against throughput x mean cycle time (Little's law, L = lambda W).

    Every completion in the window (an answer of any status, or a failure) ends a cycle of
    latency + the driver's own gap before the next send. A user waiting through the whole
    window completes nothing, so it is missing from lambda: predicted < users, flagged.
    None for an open-loop step (its users are connections, not a population in the loop), and
    for a driver that reports no cycles (wrk: its time between an answer and the next send is
    unknown, and a check without it flags every step).
    """
    cycles, users, window_s = result.get("cycles"), result["users"], result["duration_s"]
    if result.get("rate") is not None or not cycles or not users or not window_s:
        return None
    completions = cycles["completions"]
    gap_us = cycles["gap_sum_us"] / cycles["gaps"] if cycles["gaps"] else 0.0
    cycle_us = cycles["latency_sum_us"] / completions + gap_us if completions else 0.0
    predicted = completions / window_s * cycle_us / 1e6
    # A window's edges cut cycles: each user's completed cycles cover its window give or take
    # one cycle, so up to cycle/window of disagreement is the edges', not a stall's.
    tolerance = LITTLES_LAW_LIMIT + min(cycle_us / 1e6 / window_s, 1.0)
    return {"users": users, "predicted": round(predicted, 3), "ratio": round(predicted / users, 4),
            "gap_us": round(gap_us, 1), "cycle_us": round(cycle_us, 1), "tolerance": round(tolerance, 4)}


def step_record(backend: str, *, users: int, idle_connections: int, repetition: int, result: Mapping[str, Any],
                server: dict[str, Any], driver: Mapping[str, Any] | None = None,
                server_cpus: Sequence[int] = (), cores: int | None = None,
                route: str | None = None, link: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record of one window, from the driver's result (DriverResult.to_dict()), the
    server's CPU and memory over it, and the orchestrator's view of the driver's CPUs
    (`driver`: its busiest CPU's cpu_percent, steal; without it, the driver's own figure).
    `server_cpus`: the CPUs the server was pinned to; `cores`: their count when the run
    sweeps it ([server] cpus), else None; `route`: the one request the window sent, when the
    scenario sends each alone (mix "each"), else None; `link`: the emulated link as set and
    measured for the step ([network]), else None (loopback)."""
    sampled = dict(driver or {})
    sampled.setdefault("cpu_percent", result["driver_cpu_percent"])
    sampled["self_cpu_percent"] = result["driver_cpu_percent"]
    errors = result["errors"]
    # errors.bad_status counts the answers that are not 2xx/3xx and the responses that could
    # not be read at all; the latter got no answer, so they are failures, not answers.
    classes = result.get("answers_by_class") or {}
    bad_answers = sum(v for k, v in classes.items() if k not in ("2xx", "3xx")) if classes else errors["bad_status"]
    unreadable = max(errors["bad_status"] - bad_answers, 0)
    failures = errors["connect"] + errors["timeout"] + errors["reset"] + unreadable
    attempts = result["requests"] + failures
    littles = littles_law(result)
    flags = []
    # The busiest driver CPU (every driver process on it), or the driver process itself: one
    # gevent process runs on one CPU at a time, so over 90% of one CPU is its limit even
    # when it is allowed several (its time is then split across them in the per-CPU view).
    busiest = max(sampled["cpu_percent"] or 0.0, result["driver_cpu_percent"] or 0.0)
    if busiest > DRIVER_BOUND_PERCENT:
        flags.append(DRIVER_BOUND)
    if littles is not None and abs(littles["ratio"] - 1) > littles["tolerance"]:
        flags.append(LITTLES_LAW)
    steal = [side.get("steal_percent") for side in (server, sampled)]
    if any(value is not None and value > NOISY_STEAL_PERCENT for value in steal):
        flags.append(NOISY)
    if (server.get("others_percent") or 0.0) > CONTENDED_PERCENT:
        flags.append(CONTENDED)
    share = driver_share(server_cpus, sampled.get("cpu_percent_by_cpu"))
    if share is not None:
        flags.append(SHARED_CPU)
        sampled["share_of_server_percent"] = share
    if link is not None:
        flags += link_flags(link)
    return {
        "backend": backend, "users": users, "repetition": repetition, "status": "ok", "error": None,
        "requests": result["requests"], "good_requests": result["good_requests"], "errors": errors,
        "failures": failures, "error_share": round((bad_answers + failures) / attempts, 6) if attempts else 0.0,
        "answers_by_class": result["answers_by_class"], "rps": result["rps"], "good_rps": result["good_rps"],
        "duration_s": result["duration_s"],
        **{key: result[key] for key in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us")},
        "censored": result["censored"], "censored_min_us": result["censored_min_us"],
        "dropped": result["dropped"], "dropped_max_us": result["dropped_max_us"],
        "histogram": result["histogram"], "timeseries": result["timeseries"],
        "server": server,
        "driver": {**sampled, "workers": result["workers"], "worker_hosts": list(result["worker_hosts"])},
        "unfinished": result["unfinished"], "unfinished_max_us": result["unfinished_max_us"],
        "background": result["background"], "interrupted": result["interrupted"], "flags": flags,
        "littles": littles, "cycles": result["cycles"],
        "rate": result["rate"], "uncorrected": result["uncorrected"], "starved_users": result["starved_users"],
        "idle_connections": idle_connections,  # asked for; background.idle_connected: how many were held
        "server_cpus": list(server_cpus), "cores": cores, "route": route,
        "rtt_ms": None if link is None else link["rtt_ms"], "link": None if link is None else dict(link),
        "runtime": None,  # our servers: what GET /runtime said after the step (apply_runtime)
    }


def driver_share(server_cpus: Sequence[int], by_cpu: Mapping[str, float] | None) -> float | None:
    """The driver's CPU time on the server's CPUs, as a % of all the server's CPUs (its share of
    their time); None when they share none. `by_cpu`: the driver's % of each driver CPU (a
    process pinned to several is counted evenly across them, see harness.run.sampling)."""
    shared = [str(cpu) for cpu in server_cpus if str(cpu) in (by_cpu or {})]
    if not shared or by_cpu is None:
        return None
    return round(sum(by_cpu[cpu] for cpu in shared) / len(server_cpus), 1)


def apply_runtime(step: dict[str, Any], answer: Mapping[str, Any]) -> None:
    """Record what the server said of its interpreter after the step (GET /runtime:
    {"python", "free_threaded", "gil_enabled"}, or {"error"}); a free-threaded build whose GIL
    was on is flagged gil-on."""
    step["runtime"] = dict(answer)
    if answer.get("free_threaded") and answer.get("gil_enabled") and GIL_ON not in step["flags"]:
        step["flags"].append(GIL_ON)


LevelKey = tuple[str, int, "float | None", int]


def level_key(step: Step) -> LevelKey:
    """What makes repetitions one load level: the series (backend, with its route and CPU
    count, Step.series), users, offered rate (None: closed loop) and idle connections beside
    them (c10k's sweep)."""
    return step.series, step.users, step.rate, step.idle_connections


def group_levels(steps: Iterable[Step]) -> dict[LevelKey, list[Step]]:
    """The good ("ok") steps by load level, the levels in the order they first appear."""
    groups: dict[LevelKey, list[Step]] = {}
    for step in steps:
        if step.ok:
            groups.setdefault(level_key(step), []).append(step)
    return groups


def median_of(values: Iterable[float | None]) -> float | None:
    """The median of the values present (a window with no answer has no p99); None if none is."""
    present = [v for v in values if v is not None]
    return median(present) if present else None


def flag_high_spread(steps: list[dict[str, Any]]) -> None:
    """Flag every repetition of a load level whose req/s spread is over 10% (the orchestrator's
    step records, as it writes them)."""
    groups: dict[LevelKey, list[dict[str, Any]]] = {}
    for record, step in zip(steps, steps_of(steps)):
        if step.ok:
            groups.setdefault(level_key(step), []).append(record)
    for group in groups.values():
        if len(group) > 1 and summarize([s["rps"] for s in group]).high_spread:
            for record in group:
                if HIGH_SPREAD not in record["flags"]:
                    record["flags"].append(HIGH_SPREAD)
