"""concurbench: list | run | summary | report | compare | worker | serve.

This process is the orchestrator: it never imports locust (which would monkey-patch it
with gevent). Load comes from driver processes; servers run in their own processes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path

from harness.arguments import build_parser
from harness.drivers import TOKEN_ENV, new_token
from harness.results.words import counted
from harness.scenario.fields import did_you_mean


def cmd_list() -> int:
    from harness.run.listing import listing

    print(listing())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from harness.run.command import RunOptions, run_command

    drivers = ("locust", "wrk") if args.driver == "both" else (args.driver,)
    token = ""
    if args.remote_workers:
        token = args.worker_token or os.environ.get(TOKEN_ENV) or new_token()
        where = f"[{args.host}]:{args.master_port}" if ":" in args.host else f"{args.host}:{args.master_port}"
        print(f"concurbench: waiting for {counted(args.remote_workers, 'remote worker')} at {where}; start each with\n"
              f"  {worker_command(where, token)}", file=sys.stderr, flush=True)
    options = RunOptions(out_root=args.out, server_cpus=args.server_cpus, driver_cpus=args.driver_cpus,
                         host=args.host, report=not args.no_report, drivers=drivers,
                         driver_procs=args.driver_procs, remote_workers=args.remote_workers, worker_token=token,
                         master_port=args.master_port)
    return run_command(args.scenario, backend=args.backend, users=args.users, duration_s=args.duration,
                       warmup_s=args.warmup, repeat=args.repeat, options=options,
                       pythons=tuple(args.server_python) if args.server_python else None, cores=args.cores,
                       rtts_ms=args.rtt, trust_scenario=args.trust_scenario)


def worker_command(where: str, token: str) -> str:
    """The command that starts a remote worker, to be pasted as printed: a given token that
    starts with "-" goes after "=" (argparse would take it for a flag), and any the shell
    would split or expand is quoted."""
    flag = "--token=" if token.startswith("-") else "--token "
    return f"concurbench worker --master {where} {flag}{shlex.quote(token)}"


def cmd_worker(args: argparse.Namespace) -> int:
    from harness.run.driver import become_worker

    host, port = args.master
    token = args.token or os.environ.get(TOKEN_ENV)
    if not token:
        print(f"concurbench: error: worker: no token: give --token (as `concurbench run --remote-workers` printed it) "
              f"or ${TOKEN_ENV}", file=sys.stderr)
        return 2
    limits = ["--max-users", str(args.max_users), "--max-sockets", str(args.max_sockets)]
    limits += [flag for target in args.allow_target or () for flag in ("--allow-target", target)]
    become_worker(host, port, token=token, limits=limits)


def _require_runs(*paths: Path) -> None:
    """ResultsError for a RUN_DIR that is not there, in the same words for every command (a
    directory without results.json is the results reader's to name)."""
    from harness.results.store import ResultsError

    for path in paths:
        if not path.exists():
            raise ResultsError(f"{path}: no such run directory")


def cmd_report(args: argparse.Namespace) -> int:
    from harness.charts.report import write_report
    from harness.results.store import ResultsError

    try:
        _require_runs(args.run_dir)
        path = write_report(args.run_dir, out_dir=args.out)
    except ResultsError as error:
        print(f"concurbench: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # --out, or a run directory one may not write to
        print(f"concurbench: error: cannot write the report: {error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from harness.results.model import load
    from harness.results.printed import printed_summary
    from harness.results.store import ResultsError

    run_dir: Path = args.run_dir
    try:
        _require_runs(run_dir)
        text = printed_summary(load(run_dir), markdown=args.markdown)
    except ResultsError as error:
        print(f"concurbench: error: {error}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # a step without what every step has
        print(f"concurbench: error: {run_dir}: unreadable results ({type(error).__name__}: {error})", file=sys.stderr)
        return 2
    print(text)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.charts.compare import CompareError, compare
    from harness.charts.compare_formats import render
    from harness.charts.compare_gate import regressions
    from harness.results.store import ResultsError

    runs = ([args.baseline] if args.baseline else []) + list(args.runs)
    pct = args.fail_on_regression
    if len(runs) < 2:
        print("concurbench: error: compare needs at least two runs", file=sys.stderr)
        return 2
    if pct is not None and not 0 <= pct < 100:
        print(f"concurbench: error: --fail-on-regression takes a percentage from 0 to below 100, got {pct:g}",
              file=sys.stderr)
        return 2
    try:
        _require_runs(*runs)
        comparison = compare(runs, force=args.force, chart_dir=args.charts)
    except (CompareError, ResultsError) as error:
        print(f"concurbench: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the charts' directory
        print(f"concurbench: error: cannot write the charts: {error}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # a step without what every step has
        print(f"concurbench: error: unreadable results in {', '.join(map(str, runs))} "
              f"({type(error).__name__}: {error})", file=sys.stderr)
        return 2
    print(render(comparison, args.format, gate_pct=pct))
    found = regressions(comparison, pct) if pct is not None else []
    if found:
        print(f"concurbench: {counted(len(found), 'regression')} beyond {pct:g}% against {comparison.runs[0].label}: "
              + "; ".join(regression.line() for regression in found), file=sys.stderr)
        return 1
    return 0


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each command's parser, by name."""
    return next(action.choices for action in parser._actions if isinstance(action, argparse._SubParsersAction))


def _refuse_unknown_flags(command: argparse.ArgumentParser, args: list[str]) -> None:
    """Exit 2 at a flag the command does not have (nor begins), with the command's usage and
    the closest flag: argparse would print the top level's usage, or first complain that a
    required flag is missing when it was only misspelt (`run --scenarioo quick`)."""
    known = [flag for action in command._actions for flag in action.option_strings]
    for arg in args:
        if arg == "--":  # what follows is not a flag
            return
        flag = arg.partition("=")[0]
        if flag.startswith("--") and not any(name.startswith(flag) for name in known):
            command.error(f"unknown flag {flag}{did_you_mean(flag, known)}")


# The status a shell shows for a process that SIGPIPE ended, as it ends `head`'s writers.
BROKEN_PIPE_STATUS = 128 + signal.SIGPIPE


def main(argv: list[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # a reader gone (`| head -3`) shows here, not as a message at exit
        return status
    except KeyboardInterrupt:  # a run handles its own (see harness.run.command): this is any other moment
        print("concurbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Python ignores SIGPIPE, so a write to a closed pipe raises instead of ending the
        # process quietly as it ends a Unix tool. Stop quietly too; what is left in stdout's
        # buffer goes to /dev/null, or the flush at exit would raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_STATUS


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from servers.__main__ import main as serve_main

        return serve_main(argv[1:], prog="concurbench serve")
    parser = build_parser()
    command = _commands(parser).get(argv[0]) if argv else None
    if command:
        _refuse_unknown_flags(command, argv[1:])
    args, extras = parser.parse_known_args(argv)
    if extras:  # e.g. a second RUN_DIR to report: refused with the command's own usage
        (command or parser).error(f"unrecognized arguments: {' '.join(extras)}")
    if args.command == "list":
        return cmd_list()
    if args.command == "run":
        return cmd_run(args)
    if args.command == "report":
        return cmd_report(args)
    if args.command == "worker":
        return cmd_worker(args)
    if args.command == "summary":
        return cmd_summary(args)
    if args.command == "compare":
        return cmd_compare(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
