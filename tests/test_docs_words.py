"""The README and docs/ name only files, flags, defaults and make targets that exist.

Each check reads the real thing, never a list kept by hand:
- files: every link target (and the heading its #anchor names), every path in code under a
  top-level folder of the repository, and every file name (`constraints.txt`, DESIGN.md)
  anywhere, against the files of the checkout;
- flags: after `concurbench COMMAND` or `python -m servers` in code, that command's flags,
  read from the parsers the programs build (harness.arguments.build_parser,
  servers.__main__.build_parser); anywhere else, a flag of one of them (or of another tool
  the docs name, in FOREIGN_FLAGS);
- defaults: a table with a "flag" and a "default" column, and in prose "`--flag` (default X)",
  "(X by default)" or a value alone, "`--backlog` (1024)", against the parser's default;
- `make TARGET` against the Makefile, `--scenario NAME` against the built-in scenarios and
  `--backend A,B` against the registry, the peers and the doc's own `[backends]` names.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shlex
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from harness.arguments import build_parser
from harness.run.peers import PEERS
from harness.scenario import builtin_scenarios
from servers.__main__ import build_parser as build_server_parser
from servers.backends import variants
from support import ROOT, doc_name as name, doc_text as text_of

DOCS = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Flags of other programs the docs name, each with its program.
FOREIGN_FLAGS = {"--disable-gil": "CPython's configure", "--h1": "h2load", "--strict": "h1spec"}
# File names the docs use as examples of the reader's own files, never files of the project.
EXAMPLE_FILES = {"comment.md": "compare's markdown, redirected by the reader",
                 "my-scenario.toml": "a scenario file of the reader's"}
FILE_NAME = re.compile(r"(?<![\w./-])([\w-][\w.-]*\.(?:md|py|toml|txt|json|csv|png|html|lua|cfg|ini|yml|yaml))\b")
PATH = re.compile(r"(?<![\w/.$~-])(?:\./)?([\w.-]+(?:/[\w.*<>{}-]+)+/?)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# A command as typed: at the start of a line or after && or ;, perhaps with its path (.venv/bin/).
COMMAND = re.compile(r"(?:^|&&\s*|;\s*)(?:[\w.-]*/)*(concurbench|python3? -m servers)(?:\s+(.*))?$")
# The driver processes' own parsers, read from their source: importing them imports locust,
# which would monkey-patch this process with gevent.
DRIVERS = (ROOT / "harness" / "drivers" / "locust" / "driver.py", ROOT / "harness" / "drivers" / "wrk" / "driver.py")
UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "KiB": 1024.0, "KiB/s": 1024.0, "MiB": 2.0**20}
DEFAULT_IN_PROSE = re.compile(r"`(--[\w-]+)[^`]*`\s*\((?:default:?\s*([^)]+)|([^)]+?) by default)\)")
# "`--backlog` (1024)", "`--port` (0 = any free port)": a value alone, or before = , ; in parentheses.
VALUE_IN_PROSE = re.compile(r"`(--[\w-]+)`\s*\((\d[\d,.]*(?:\s*(?:KiB/s|KiB|MiB|ms|s)\b)?)\s*[=,;)]")


# --- what exists ------------------------------------------------------------------------------

@cache
def files() -> frozenset[str]:
    """The checkout's files (tracked, or new and not ignored), relative to the root."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but hidden ones
        listed = []
        for top, dirs, found in os.walk(ROOT):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            listed += [os.path.relpath(os.path.join(top, file), ROOT) for file in found]
    return frozenset(listed)


@cache
def folders() -> frozenset[str]:
    return frozenset(str(parent) for file in files() for parent in Path(file).parents if str(parent) != ".")


def exists(path: str) -> bool:
    path = path.rstrip("/")
    if "*" in path:
        return any(Path(file).match(path) for file in files())
    return path in files() or path in folders()


@cache
def basenames() -> frozenset[str]:
    return frozenset(Path(file).name for file in files())


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(dict(action.choices) for action in parser._actions if isinstance(action, argparse._SubParsersAction))


@cache
def parsers() -> dict[str, argparse.ArgumentParser]:
    """Each command the docs may name, by the words that start it."""
    commands = {f"concurbench {command}": parser for command, parser in subcommands(build_parser()).items()}
    commands["concurbench serve"] = commands["python -m servers"] = build_server_parser()
    return commands


def flags_of(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


def source_flags(path: Path) -> set[str]:
    """The flags a module's add_argument calls name."""
    return {node.args[0].value for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
            and node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("--")}


@cache
def every_flag() -> frozenset[str]:
    """Every flag of concurbench, the servers and the driver processes."""
    ours = {flag for parser in parsers().values() for flag in flags_of(parser)}
    return frozenset(ours.union(*(source_flags(path) for path in DRIVERS)))


@cache
def make_targets() -> frozenset[str]:
    return frozenset(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))


# --- where the docs name them ------------------------------------------------------------------

def code_lines(text: str) -> list[str]:
    """Each line of fenced code (continuations joined, comments left out) and each inline code span."""
    lines = [re.sub(r"(^|\s)#.*$", "", line) for block in FENCED.findall(text)
             for line in block.replace("\\\n", " ").splitlines()]
    return lines + CODE_SPAN.findall(FENCED.sub("", text))


def words_of(text: str) -> list[str]:
    """A command's words, a quoted one ('cmd:mysrv --port {port}') kept whole."""
    try:
        return shlex.split(text)
    except ValueError:  # an unclosed quote in a fragment
        return text.split()


def prose(text: str) -> str:
    return CODE_SPAN.sub(" ", FENCED.sub("", text))


def placeholder(path: str) -> bool:
    """A path written with a stand-in: <scenario>, {port}, RUN_A, $BASE."""
    return any(mark in path for mark in "<>{}$") or any(
        re.fullmatch(r"[A-Z][A-Z0-9_]*", part) for part in re.split(r"[/.]", path) if part)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    return {slug(heading) for heading in re.findall(r"^#+\s+(.+)$", FENCED.sub("", text_of(doc)), re.M)}


def stale_files(doc: Path) -> list[str]:
    text = text_of(doc)
    stale = []
    for target in LINK.findall(FENCED.sub("", text)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        relative = os.path.relpath(linked, ROOT)
        if not exists(relative):
            stale.append(f"link {target} (no {relative})")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            stale.append(f"link {target} (no heading #{anchor} in {relative})")
    tops = {Path(file).parts[0] for file in files()}
    for line in code_lines(text):
        for path in PATH.findall(line):
            if path.split("/")[0] in tops and not placeholder(path) and not exists(path):
                stale.append(path)
    for found in FILE_NAME.findall(FENCED.sub("", text)):
        if found not in basenames() and found not in EXAMPLE_FILES:
            stale.append(found)
    return stale


def commands_in(doc: Path) -> list[tuple[str, list[str]]]:
    """Each concurbench or servers command in the doc's code: the command, and its words."""
    found = []
    for line in code_lines(text_of(doc)):
        match = COMMAND.search(line)
        if not match:
            continue
        program = "python -m servers" if match[1].startswith("python") else "concurbench"
        words = words_of(match[2] or "")
        if program == "concurbench" and words and not words[0].startswith("-"):
            program, words = f"concurbench {words[0]}", words[1:]
        if program != "concurbench" or words:  # `concurbench` alone names the program
            found.append((program, words))
    return found


def stale_flags(doc: Path) -> list[str]:
    stale = []
    for command, words in commands_in(doc):
        if command not in parsers():
            if not placeholder(command.split()[-1]):
                stale.append(f"{command} (no such command)")
            continue
        known = flags_of(parsers()[command])
        stale += [f"{command} {flag}" for word in words for flag in FLAG.findall(word.partition("=")[0])
                  if word.startswith("--") and flag not in known]
    # In prose, and in code that names a flag (`--threads N`); not in other programs' commands.
    named = FLAG.findall(prose(text_of(doc))) + [span.split()[0] for span in CODE_SPAN.findall(FENCED.sub("", text_of(doc)))
                                                 if span.startswith("--")]
    stale += [flag for flag in named if flag not in every_flag() and flag not in FOREIGN_FLAGS]
    return stale


def stated_defaults(doc: Path) -> list[tuple[str, str]]:
    """(flag, the default the doc gives it): from tables with a flag and a default column,
    and from "`--flag` (default X)" in prose."""
    stated = []
    header: list[str] = []
    for line in FENCED.sub("", text_of(doc)).splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not header:
            header = [cell.lower() for cell in cells]
        elif "flag" in header and "default" in header and not set(line) <= set("|-: "):
            flags = FLAG.findall(cells[header.index("flag")])
            if flags:
                stated.append((flags[0], cells[header.index("default")]))
    for flag, default, by_default in DEFAULT_IN_PROSE.findall(text_of(doc)):
        stated.append((flag, default or by_default))
    stated += VALUE_IN_PROSE.findall(text_of(doc))
    return stated


def agrees(stated: str, default: Any) -> bool:
    """Whether the words a doc gives as a flag's default say the parser's default."""
    text = stated.replace("`", "").strip()
    number = re.match(r"(\d[\d,]*(?:\.\d+)?)\s*(KiB/s|KiB|MiB|ms|s)?\b", text)
    if default is None or default is False:
        return number is None  # words ("none: a thread per connection", "off"), not a value
    if isinstance(default, (int, float)):
        return number is not None and float(number[1].replace(",", "")) * UNITS[number[2] or ""] == default
    return text.split()[0].rstrip(",;:") == str(default)


def stale_defaults(doc: Path) -> list[str]:
    stale = []
    for flag, stated in stated_defaults(doc):
        distinct = {id(parser): parser for parser in parsers().values()}.values()  # serve is python -m servers
        defaults = [flags_of(parser)[flag].default for parser in distinct if flag in flags_of(parser)]
        if not defaults:
            stale.append(f"{flag} (no such flag)")
        elif not any(agrees(stated, default) for default in defaults):
            stale.append(f"{flag}: the doc says {stated!r}, the parser {' or '.join(map(repr, defaults))}")
    return stale


def stale_names(doc: Path) -> list[str]:
    """make targets, scenarios and backends named in commands."""
    text = text_of(doc)
    stale = []
    for line in code_lines(text):
        for targets in re.findall(r"(?:^|[\s&;])make((?:\s+[a-z][\w-]*)+)", line):
            stale += [f"make {target}" for target in targets.split() if target not in make_targets()]
    own = set(re.findall(r"(?m)(?:^|\] )([\w-]+) = \"", text))  # the doc's own [backends] entries
    backends = {"all", *variants(), *PEERS, *own}
    for command, words in commands_in(doc):
        for flag, value in zip(words, words[1:]):
            value = value.strip("'\"")
            if flag == "--scenario" and not value.endswith(".toml") and not placeholder(value):
                stale += [] if value in builtin_scenarios() else [f"--scenario {value}"]
            if flag == "--backend" and not value.startswith("cmd:") and not placeholder(value):
                stale += [f"--backend {part}" for part in value.split(",") if part not in backends]
    return stale


@pytest.mark.parametrize("doc", DOCS, ids=name)
def test_the_docs_name_only_what_exists(doc: Path) -> None:
    stale = {"files": stale_files(doc), "flags": stale_flags(doc), "defaults": stale_defaults(doc),
             "names": stale_names(doc)}
    stale = {kind: found for kind, found in stale.items() if found}
    assert not stale, f"{name(doc)} names what does not exist: {stale}"


def test_the_checks_see_the_docs() -> None:
    """The checks above find what they look for (a pattern that matched nothing would pass)."""
    assert any(commands_in(doc) for doc in DOCS)
    assert sum(len(stated_defaults(doc)) for doc in DOCS) >= 10
    assert "--port" in every_flag() and "--scenario" in every_flag()
    assert "demo" in make_targets()
