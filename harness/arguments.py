"""The command line's grammar: every command, its flags, their types and help (build_parser).

harness.cli runs the commands; this module only says what they accept, so `--help`, the
did-you-mean of a misspelt flag and the docs' stale-word check (tests/test_docs_words.py) all
read one parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import textwrap
from pathlib import Path
from typing import Any

from harness.drivers import MASTER_PORT, TOKEN_ENV, WORKER_MAX_SOCKETS, WORKER_MAX_USERS
from harness.scenario import parse_duration
from servers._help import DefaultsOnce
from servers.backends import BACKENDS, variants


RESULTS_ROOT = Path("results")


def _comma_counts(what: str, example: str) -> Callable[[str], tuple[int, ...]]:
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of {what} like {example}, got {text!r}") from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"{what} must be positive integers, got {text!r}")
        return values
    return parse


_users = _comma_counts("user counts", "1,8,32")
_counts = _comma_counts("CPU counts", "1,2,4")


def _rtts(text: str) -> tuple[float, ...]:
    """--rtt 0,20,100: round trips in ms (the scenario checks each, as it does rtt_ms)."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of round trips in ms like 0,20,100, got {text!r}") \
            from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma list of round trips in ms like 0,20,100, got {text!r}")
    return values


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _cpus(text: str) -> tuple[int, ...]:
    try:
        cpus: list[int] = []
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
        return tuple(cpus)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPUs like 0 or 0-1 or 0,2, got {text!r}") from None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return int(text)


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _master(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT, [IPV6]:PORT or a bare IPv6 address; the port defaults to Locust's (MASTER_PORT)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or (":" in host and not host.endswith("]")):
        host, port = text, str(MASTER_PORT)
    host = host.strip("[]")
    if not host or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST or HOST:PORT, got {text!r}")
    return host, int(port)


def _summary_columns() -> str:
    """The columns of summary.csv and what each holds, for `concurbench summary --help`."""
    from harness.results.summary import COLUMN_NOTES

    lines = ["summary.csv, written beside results.json by every run, has these columns:"]
    for column, note in COLUMN_NOTES.items():
        lines.append(textwrap.fill(note or "as above", width=100, initial_indent=f"  {column:<20} ",
                                   subsequent_indent=" " * 23))
    return "\n".join(lines)


class _HelpFormatter(DefaultsOnce, argparse.RawDescriptionHelpFormatter):
    """The servers' rule for defaults, with descriptions laid out as written."""


def _command(sub: argparse._SubParsersAction, name: str, summary: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A command, with its one-line summary in the top-level list and a description (the
    summary as a sentence, unless given) atop its own --help."""
    description = kwargs.pop("description", summary[0].upper() + summary[1:] + ".")
    return sub.add_parser(name, help=summary, description=textwrap.fill(description, width=100),
                          formatter_class=_HelpFormatter, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="concurbench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Compare server concurrency models: run a scenario's load against backends, "
                                  "then read, redraw and compare the stored runs.", width=100),
        epilog="Start with `concurbench list`, then `concurbench run --scenario quick --backend threaded,asyncio`."
               "\n`concurbench COMMAND --help` describes a command and its flags.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _command(sub, "list", "list the backends and their variants, the ready-made peers, the Pythons found here "
                          "and the built-in scenarios, each with about how long it takes")

    run = _command(sub, "run", "run a scenario against backends and store the results under --out",
                   description="Run a scenario's load against backends, one at a time, and store the results "
                               "(results.json, summary.csv, charts, report.html) in a new run directory under --out.")
    run.add_argument("--scenario", required=True, help="a built-in scenario name (see `concurbench list`) or a TOML file")
    run.add_argument("--backend", default="all",
                     help=f"'all' (our {len(BACKENDS)}), or a comma list of: " + ", ".join(BACKENDS)
                          + ", a variant (" + ", ".join(name for name in variants() if name not in BACKENDS) + ")"
                          + ", a ready-made peer (uvicorn, gunicorn-sync, gunicorn-gthread, granian, granian-wsgi,"
                          " http.server), a name from"
                          " the scenario's [backends], or 'cmd:COMMAND with {port}'")
    run.add_argument("--users", type=_users, metavar="N,...", help="override the user sweep, e.g. 1,8,32,128")
    run.add_argument("--duration", type=_duration, help="override each measured step's length, e.g. 10s")
    run.add_argument("--warmup", type=_duration, help="override the warm-up before each user level, e.g. 2s")
    run.add_argument("--repeat", type=_positive, metavar="N", help="override repetitions per (backend, users)")
    run.add_argument("--host", default="127.0.0.1",
                     help="address our backends bind; the driver targets it (0.0.0.0 as a target means this host). "
                          "Over an emulated link ([network] or --rtt) the backend binds the link's own address in "
                          "its namespace instead: 127.0.0.1 there cannot be reached from the driver's")
    run.add_argument("--out", type=Path, default=RESULTS_ROOT, metavar="DIR",
                     help="directory the run directory is created in")
    run.add_argument("--server-cpus", type=_cpus, metavar="CPUS",
                     help="CPUs for the server, e.g. 0-3 or 0,2 (default: the first half)")
    run.add_argument("--driver-cpus", type=_cpus, metavar="CPUS",
                     help="CPUs for the driver, e.g. 4-7 (default: the second half)")
    run.add_argument("--server-python", action="append", metavar="PATH",
                     help="run our backends under this Python 3.11+ (a path or a command, e.g. python3.13); "
                          "repeat it to compare interpreters: each backend runs under each, labelled "
                          "threaded@3.13 (overrides the scenario's [server] python; default: this interpreter)")
    run.add_argument("--cores", type=_counts, metavar="N,...",
                     help="server CPU counts to sweep, e.g. 1,2,4: the backend is started pinned to that many of "
                          "the server CPUs for each (overrides [server] cpus; default: all the server CPUs)")
    run.add_argument("--rtt", type=_rtts, metavar="MS,...",
                     help="round trips to sweep, in ms, e.g. 0,20,100: the server and the driver each run in a network "
                          "namespace of the run's own, joined by an emulated link (overrides [network] rtt_ms; "
                          "needs root, /dev/net/tun and iproute2)")
    run.add_argument("--no-report", action="store_true", help="skip the charts and HTML report at the end")
    run.add_argument("--trust-scenario", action="store_true",
                     help="run the commands a scenario file of your own names ([backends] entries, [server] python); "
                          "without it, such a file's commands are shown and nothing runs. The built-in scenarios "
                          "need no consent")
    run.add_argument("--driver-procs", type=_positive, default=1, metavar="N",
                     help="Locust load processes: above 1, Locust's master/worker mode with N local workers, "
                          "one per driver CPU in turn")
    run.add_argument("--remote-workers", type=_nonnegative, default=0, metavar="M",
                     help="also wait for M `concurbench worker --master THIS_HOST` on other machines "
                          "(then --host must be an address they reach; the master listens there only, on "
                          "--master-port, and counts in only workers given the run's token)")
    run.add_argument("--master-port", type=_port, default=MASTER_PORT, metavar="PORT",
                     help="with --remote-workers: the port the master listens on for them; another run on this "
                          "machine may hold it already")
    run.add_argument("--worker-token", metavar="TOKEN",
                     help=f"the token remote workers must know (default: ${TOKEN_ENV}, else a new one per run, "
                          "printed with the command that starts a worker)")
    run.add_argument("--driver", choices=["locust", "wrk", "both"], default="locust",
                     help="load generator: the Locust driver, wrk (a cross-check, when wrk is installed), or both "
                          "in turn against the same server, with the ratio per step")

    report = _command(sub, "report", "draw the charts and report.html of a stored run (no live load)",
                      description="Draw the charts and write report.html of a stored run, from its results.json "
                                  "alone (no live load), into the run directory or into --out DIR.")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory, with its results.json")
    report.add_argument("--out", type=Path, metavar="DIR",
                        help="write report.html and its charts/ to DIR (created if need be) instead of RUN_DIR, "
                             "e.g. for a run you may not write to")

    summary = _command(
        sub, "summary", "print the summary table, capacity and findings of a stored run (--markdown: as GitHub markdown)",
        description=("Print the summary table of a stored run, from its results.json alone (no live load): one "
                    "row per backend and load level. Each row is the repetition with the median good req/s "
                    "(2xx/3xx answers per second), with its own "
                    "percentiles; errors and dropped are summed over the repetitions, starved and steal are the "
                    "largest, flags are those of any repetition. A percentile shown as >=N is a lower bound: it "
                    "reaches requests that timed out or were still waiting. '-': not recorded by the "
                    "concurbench that made the run. Under the table: the capacity a rate search found, and the "
                    "run's findings."),
        epilog=_summary_columns())
    summary.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory, with its results.json")
    summary.add_argument("--markdown", action="store_true",
                         help="print GitHub markdown (what a README or a pull request pastes): the tables as "
                              "markdown tables, the findings as a list")

    compare = _command(
        sub, "compare", "compare runs of the same scenario: ratios with 95%% confidence intervals, a regression gate",
        description=(
            "Compare each RUN with the first one (or with --baseline): per backend and load level, throughput "
            "(good req/s) and p99, each the geometric mean of the repetitions, "
            "with the ratio run/base and its 95% confidence interval: Welch's t interval on the logarithms of "
            "the repetitions' values (scipy). A ratio whose interval includes 1 is 'not significant'. Runs from "
            "different machines or scenarios are refused unless --force."))
    compare.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                         help="run directories or results.json files; the first is the base unless --baseline")
    compare.add_argument("--baseline", type=Path, metavar="RUN",
                         help="the base every RUN is compared with, e.g. a stored run under results/reference/")
    compare.add_argument("--force", action="store_true", help="compare runs from different machines or scenarios anyway")
    compare.add_argument("--charts", type=Path, metavar="DIR", help="also draw overlay charts into DIR")
    compare.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                         help="text (default), markdown for a pull-request comment, json for tools")
    compare.add_argument("--fail-on-regression", type=float, metavar="PCT",
                         help="exit 1 when any backend and level is significantly worse than the base by more than "
                              "PCT percent (throughput below 1-PCT/100 of the base's, or p99 above 1+PCT/100), "
                              "or failed where the base ran, listing each; exit 0 otherwise")

    worker = _command(sub, "worker", "lend this machine's CPUs to a `concurbench run --remote-workers` "
                                     "elsewhere, backend after backend, until Ctrl+C",
                      description="Lend this machine's CPUs to a `concurbench run --remote-workers M` on another "
                                  "machine: join its load as one more Locust worker, for each backend in turn, "
                                  "until Ctrl+C. The run prints the command to start it, with its token.")
    worker.add_argument("--master", required=True, type=_master, metavar="HOST[:PORT]",
                        help=f"the machine running `concurbench run` (port {MASTER_PORT} unless given)")
    worker.add_argument("--token", help=f"the run's token, as `concurbench run` printed it (default: ${TOKEN_ENV}); "
                                        "a master that does not know it is left at once")
    worker.add_argument("--max-users", type=_positive, default=WORKER_MAX_USERS, metavar="N",
                        help="refuse a level that would give this machine more users")
    worker.add_argument("--max-sockets", type=_nonnegative, default=WORKER_MAX_SOCKETS, metavar="N",
                        help="refuse a level that would give this machine more idle and slow background sockets")
    worker.add_argument("--allow-target", action="append", metavar="HOST",
                        help="the only server this machine will load (repeatable; default: the master's host)")

    # Handled before parsing (see _main): `concurbench serve --help` is python -m servers' own.
    serve = _command(sub, "serve", "run one of our backends in the foreground, to try it by hand (e.g. with curl): "
                                   "python -m servers' flags", add_help=False)
    serve.add_argument("args", nargs=argparse.REMAINDER, help="python -m servers' flags: `concurbench serve --help`")
    return parser


