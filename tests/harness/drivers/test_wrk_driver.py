"""The wrk driver: its request bytes and histogram arithmetic, then real wrk runs against a
real asyncio backend, run as the orchestrator runs a driver (a subprocess, JSON on stdout)."""

from __future__ import annotations

import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, LiveServer

from harness.drivers.spec import DriverResult, DriverSpec, ErrorCounts, RequestSpec, SpecError, read_result
from harness.drivers.wire import build_request
from harness.drivers.wrk.driver import check_supported, from_percentiles, uncorrected
from harness.results.metrics import decode_histogram, new_histogram
from harness.results.steps import LITTLES_LAW, step_record

REPO = ROOT
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")

BASE = DriverSpec(host="127.0.0.1", port=8000, requests=(RequestSpec(),), users=2, duration_s=1.0)


# --- what wrk can and cannot express ------------------------------------------------------

UNSUPPORTED = {
    "idle-connections": replace(BASE, idle_connections=1),
    "slow-clients": replace(BASE, slow_clients=1),
    "no-users": replace(BASE, users=0),
    "head": replace(BASE, requests=(RequestSpec(method="HEAD"),)),
    "ramp-longer-than-warmup": replace(BASE, users=10, spawn_rate=2.0, warmup_s=1.0),
    "open-loop": replace(BASE, rate=100.0),
}
SUPPORTED = {
    "mix": replace(BASE, requests=(RequestSpec(path="/a", weight=3), RequestSpec(path="/b"))),
    "post-body": replace(BASE, requests=(RequestSpec(method="POST", path="/echo", body="hi"),)),
    "no-keep-alive": replace(BASE, keep_alive=False),
    "head-weight-0": replace(BASE, requests=(RequestSpec(), RequestSpec(method="HEAD", weight=0))),
    "ramp-within-warmup": replace(BASE, users=10, spawn_rate=5.0, warmup_s=2.0),
}


@pytest.mark.parametrize("spec", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_spec_is_refused_with_the_way_out(spec: DriverSpec) -> None:
    with pytest.raises(SpecError, match="; use --driver locust$"):
        check_supported(spec)


@pytest.mark.parametrize("spec", SUPPORTED.values(), ids=SUPPORTED.keys())
def test_supported_spec_passes(spec: DriverSpec) -> None:
    check_supported(spec)


REQUESTS = {
    "get": (RequestSpec(path="/sleep?ms=10"), True),
    "post-body": (RequestSpec(method="POST", path="/echo", body="héllo"), True),
    "post-empty": (RequestSpec(method="POST", path="/echo"), True),
    "close": (RequestSpec(), False),
    "header-override": (RequestSpec(headers={"host": "other", "X-A": "1"}), False),
}


@pytest.mark.parametrize("entry, keep_alive", REQUESTS.values(), ids=REQUESTS.keys())
def test_built_requests_parse_back_to_what_the_spec_says(entry: RequestSpec, keep_alive: bool) -> None:
    """Both drivers send wire.build_request's bytes; our own parser must read them back."""
    from servers.http import RequestParser

    (request,) = RequestParser().feed(build_request(entry, host="127.0.0.1:8000", keep_alive=keep_alive))
    assert (request.method, request.target, request.body) == (entry.method, entry.path, entry.body.encode())
    assert request.keep_alive is keep_alive
    expected_host = {k.lower(): v for k, v in entry.headers.items()}.get("host", "127.0.0.1:8000")
    assert request.headers.get("host") == expected_host.encode()


def wrk_correct(true: dict[int, int], e: int) -> dict[int, int]:
    """wrk 4's stats_correct (stats.c), literally."""
    data = Counter(true)
    for n in range(2 * e, max(true) + 1):
        count, m = data[n], n - e
        while count and m > e:
            data[m] += count
            m -= e
    return {n: c for n, c in data.items() if c}


DISTRIBUTIONS = {
    "tight": {1000 + i: 50 for i in range(20)},
    "heavy-tail": {**{300 + i: 100 for i in range(50)}, 9000: 3, 25_000: 1, 400_000: 1},
    "bimodal": {200: 500, 201: 400, 5000: 300, 5003: 10},
    "random": dict(Counter(int(random.Random(7).lognormvariate(7, 1)) for _ in range(5000))),
}


@pytest.mark.parametrize("true", DISTRIBUTIONS.values(), ids=DISTRIBUTIONS.keys())
def test_uncorrected_undoes_wrks_coordinated_omission_correction(true: dict[int, int]) -> None:
    requests, connections, duration_us = sum(true.values()), 4, 1_000_000
    e = duration_us // (requests // connections)  # as wrk.c computes it
    corrected = wrk_correct(true, e)
    assert uncorrected(corrected.items(), requests=requests, duration_us=duration_us,
                       connections=connections) == true


def test_uncorrected_leaves_a_run_shorter_than_one_request_per_connection() -> None:
    assert uncorrected([(10, 1), (50, 1)], requests=2, duration_us=100, connections=4) == {10: 1, 50: 1}


def test_from_percentiles_reproduces_the_grid_quantiles() -> None:
    values = sorted(int(random.Random(3).expovariate(1 / 2000)) + 100 for _ in range(10_000))
    grid = [(p, values[max(0, round(p / 100 * len(values) + 0.5) - 1)]) for p in (*range(1, 100), 99.9, 99.99)]
    hist = new_histogram()
    for value, count in from_percentiles(grid, total=len(values), max_us=values[-1]).items():
        hist.record_value(value, count)
    assert hist.get_total_count() == len(values)
    for p, value in grid:
        assert hist.get_value_at_percentile(p) == pytest.approx(value, rel=0.002, abs=1)
    assert hist.get_max_value() == pytest.approx(values[-1], rel=0.001)


# --- the driver as a process ---------------------------------------------------------------


def write_spec(path: Path, **spec: Any) -> Path:
    path.write_text(json.dumps({"host": "127.0.0.1", "requests": [{"path": "/"}], "users": 4, "duration_s": 1,
                                **spec}))
    return path


def start_driver(tmp_path: Path, *specs: Path, env: dict[str, str] = ENV) -> subprocess.Popen:
    argv = [sys.executable, "-m", "harness.drivers.wrk.driver", "--out-dir", str(tmp_path)]
    for spec in specs:
        argv += ["--spec", str(spec)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)


def drive(tmp_path: Path, **spec: Any) -> tuple[list[dict[str, Any]], str]:
    """Run one spec to the end; its stdout events, and its stderr."""
    proc = start_driver(tmp_path, write_spec(tmp_path / "spec.json", **spec))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def results(events: list[dict[str, Any]]):  # type: ignore[no-untyped-def]
    return [read_result(e["path"]) for e in events if e["type"] == "result"]


REFUSED = {
    "unresolvable-host": {"port": 1, "host": "no-such-host.invalid"},  # RFC 6761: never resolves
    "idle-connections": {"port": 1, "idle_connections": 2},
    "head": {"port": 1, "requests": [{"method": "HEAD"}]},
    "bad-json-key": {"port": 1, "colour": "red"},
}


@pytest.mark.parametrize("spec", REFUSED.values(), ids=REFUSED.keys())
def test_unusable_spec_exits_2_with_one_line(tmp_path: Path, spec: dict[str, Any]) -> None:
    proc = start_driver(tmp_path, write_spec(tmp_path / "spec.json", **spec))
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("wrk driver: "), err


def test_missing_wrk_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = start_driver(tmp_path, write_spec(tmp_path / "spec.json", port=1), env={**ENV, "PATH": str(tmp_path)})
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.splitlines() == [("wrk driver: wrk is not on PATH; install it (apt-get install wrk) "
                                 "or use --driver locust")]


@pytest.fixture(scope="module")
def backend() -> Any:
    live = LiveServer(("--backend", "asyncio")).start()
    yield live
    live.kill()


@needs_wrk
def test_each_window_has_a_result_whose_histogram_matches_it(tmp_path: Path, backend: LiveServer) -> None:
    events, _ = drive(tmp_path, port=backend.port, requests=[{"path": "/sleep?ms=5"}], warmup_s=0.5, repeat=2)
    assert [(e["spec"], e["repetition"]) for e in events if e["type"] == "result"] == [(0, 0), (0, 1)]
    assert {e["phase"] for e in events if e["type"] == "progress"} == {"warmup", "measure"}
    for result in results(events):
        assert result.requests > 0 and result.errors.total == 0
        assert 5000 <= result.p50_us <= result.p90_us <= result.p99_us <= result.p999_us
        assert result.p999_us <= result.max_us * 1.001 + 1  # a percentile is its bucket's top, max is exact
        assert result.duration_s == pytest.approx(1.0, abs=0.2)
        assert (result.users, result.keep_alive, result.interrupted, result.timeseries) == (4, True, False, ())
        assert (result.rate, result.uncorrected, result.starved_users) == (None, None, 0)
        hist = decode_histogram(result.histogram)
        assert hist.get_total_count() == result.requests
        assert hist.get_value_at_percentile(50) == pytest.approx(result.p50_us, rel=0.1)


@needs_wrk
def test_a_404_counts_as_bad_status(tmp_path: Path, backend: LiveServer) -> None:
    [result] = results(drive(tmp_path, port=backend.port, requests=[{"path": "/no-such-page"}])[0])
    assert result.requests > 0 and result.errors == replace(result.errors, bad_status=result.requests)


def step_of(result: DriverResult) -> dict[str, Any]:
    """The step record the orchestrator would make of this window."""
    return step_record("b", users=result.users, idle_connections=0, repetition=0, result=result.to_dict(),
                       server={})


@needs_wrk
def test_a_step_answered_200_is_all_good_and_not_held_to_littles_law(tmp_path: Path, backend: LiveServer) -> None:
    """wrk does not say when each connection sends, so its cycle, and Little's law, are unknown."""
    [result] = results(drive(tmp_path, port=backend.port)[0])
    step = step_of(result)
    assert result.requests > 0 and result.errors.total == 0
    assert (step["good_requests"], step["good_rps"]) == (step["requests"], step["rps"])
    assert LITTLES_LAW not in step["flags"] and step["littles"] is None


class Unavailable(http.server.BaseHTTPRequestHandler):
    """503 to every request, on a connection kept alive: every request wrk sends is answered."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@needs_wrk
def test_a_step_answered_503_has_no_good_requests_and_all_errors(tmp_path: Path) -> None:
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            [result] = results(drive(tmp_path, port=server.server_address[1])[0])
        finally:
            server.shutdown()
    step = step_of(result)
    assert result.requests > 0 and result.errors == ErrorCounts(bad_status=result.requests)
    assert (step["good_requests"], step["good_rps"], step["error_share"]) == (0, 0.0, 1.0)


@needs_wrk
def test_without_keep_alive_every_request_gets_a_connection(tmp_path: Path, backend: LiveServer) -> None:
    [result] = results(drive(tmp_path, port=backend.port, keep_alive=False)[0])
    assert result.requests > 0 and result.errors.total == 0 and result.keep_alive is False


@needs_wrk
def test_a_weighted_mix_with_a_post_body_is_sent(tmp_path: Path, backend: LiveServer) -> None:
    mix = [{"path": "/"}, {"method": "POST", "path": "/echo", "body": "x" * 100}, {"path": "/gone", "weight": 2}]
    [result] = results(drive(tmp_path, port=backend.port, requests=mix)[0])
    assert result.requests > 0 and result.errors.total == result.errors.bad_status
    assert 0.4 < result.errors.bad_status / result.requests < 0.6


@needs_wrk
def test_a_dead_port_gives_connect_errors(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    [result] = results(drive(tmp_path, port=port)[0])
    assert (result.requests, result.p50_us, result.starved_users) == (0, None, 4) and result.errors.connect >= 1


@needs_wrk
def test_sigterm_ends_the_window_early_and_skips_the_rest(tmp_path: Path, backend: LiveServer) -> None:
    proc = start_driver(tmp_path, write_spec(tmp_path / "spec.json", port=backend.port, duration_s=20, repeat=2))
    time.sleep(1.0)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 2.0
    [result] = results([json.loads(line) for line in out.splitlines()])
    assert result.interrupted and result.requests > 0 and result.duration_s < 2.0
