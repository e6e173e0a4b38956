"""report.html: one self-contained page that opens from the file system: a verdict and the
headline chart first, then the findings, the summary table, the flags, the failures, the
other charts and the details.

The report is written once per module from a copy of fixture run-b, which has a failed
backend, a driver-bound step and a high-spread step. A headless Chromium, when there is
one, checks that the page really renders, and what fits its first screen.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.results.model import Run
from harness.charts.report import REPORT_FILE, render_report, write_report
from harness.results.findings import VERDICT_SIZE
from harness.results.store import ResultsError, read_results
from support import FIXTURES

RUNS = FIXTURES / "runs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM_TIMEOUT_S = 60


class PageParser(HTMLParser):
    """Collects what the tests look at: images, resource references, table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.references: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.summary_rows = 0
        self._in_summary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        for name in ("src", "href"):
            if values.get(name):
                self.references.append((tag, name, values[name] or ""))
        if tag == "table" and values.get("class") == "summary":
            self._in_summary = True
        elif tag == "tr" and self._in_summary and values.get("class") != "failed-row":
            self.summary_rows += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_summary = False


class Landmarks(HTMLParser):
    """What a reader meets scrolling down the page, in order: the verdict, the headline chart,
    the findings, the summary table, the flags, the details; any other table or chart too."""

    NAMED = {("section", "verdict"): "verdict", ("figure", "headline"): "headline chart",
             ("section", "findings"): "findings", ("table", "summary"): "summary table",
             ("h2", "warnings"): "flags", ("h2", "details"): "details"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.verdict: list[str] = []
        self.findings: list[str] = []
        self._list: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        name = self.NAMED.get((tag, values.get("id") or values.get("class") or ""))
        if name is None and tag in ("figure", "table"):
            name = "chart" if tag == "figure" else "table"
        if name:
            self.seen.append(name)
        if tag == "li" and "finding" in (values.get("class") or "").split():
            self._list = self.verdict if self.seen[-1] == "verdict" else self.findings
            self._list.append("")

    def handle_data(self, data: str) -> None:
        if self._list is not None:
            self._list[-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._list = None


def landmarks(page: str) -> Landmarks:
    parser = Landmarks()
    parser.feed(page)
    return parser


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "run-b"
    shutil.copytree(RUNS / "run-b", run_dir)
    return write_report(run_dir)


@pytest.fixture(scope="module")
def page(report: Path) -> str:
    return report.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return read_results(RUNS / "run-b")


def test_report_is_written_beside_the_results(report: Path) -> None:
    assert report.name == REPORT_FILE and (report.parent / "results.json").exists()


def test_report_needs_nothing_from_the_network(page: str) -> None:
    assert 'src="http' not in page and "<script" not in page and "<link" not in page
    for tag, attribute, value in parse(page).references:
        if attribute == "src":
            assert value.startswith("data:"), (tag, value[:60])
        else:  # links stay on the page or beside it (the SVG files)
            assert not value.startswith(("http:", "https:", "//")), value


def test_every_image_is_an_embedded_png(page: str, report: Path) -> None:
    images = parse(page).images
    pngs = sorted((report.parent / "charts").glob("*.png"))
    assert len(images) == len(pngs) == 8  # 5 charts + a timeseries per load level
    for src in images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        data = base64.b64decode(src[len(prefix):], validate=True)
        assert data[:8] == PNG_SIGNATURE
        width, height = struct.unpack(">II", data[16:24])
        assert 400 <= width <= 2000 and 200 <= height <= 2000


def test_the_first_screen_is_the_verdict_then_the_headline_chart(page: str) -> None:
    found = landmarks(page)
    named = [name for name in found.seen if name not in ("chart", "table")]
    assert found.seen[:2] == ["verdict", "headline chart"], found.seen
    assert named == ["verdict", "headline chart", "findings", "summary table", "flags", "details"]
    assert found.seen.index("chart") > found.seen.index("summary table")  # the other charts come later
    assert re.search(r'<figure class="headline"><img src="data:[^"]*" alt="throughput_vs_users"', page)


def test_the_verdict_is_a_few_of_the_findings(page: str) -> None:
    found = landmarks(page)
    assert 1 <= len(found.verdict) <= VERDICT_SIZE and set(found.verdict) <= set(found.findings)


def test_a_finding_the_runs_shape_rules_out_is_only_a_note_in_the_details(page: str) -> None:
    """run-b swept 1, 8 and 32 users: no USL fit can apply to 3 levels."""
    assert "no USL fit" not in page
    details = page[page.index('<h2 id="details">'):]
    assert ("No Universal Scalability Law fit: this run swept 3 user levels (1, 8 and 32), and the fit has 3 "
            "parameters, so it needs at least 4 levels.") in details


def test_the_page_speaks_of_the_product_not_its_history(page: str) -> None:
    words = re.sub(r'src="data:[^"]*"', "", page)
    assert not re.search(r"\bissue\b|before goodput", words, re.IGNORECASE)
    assert "1 users" not in words


def test_summary_table_has_a_row_per_backend_and_load_level(page: str) -> None:
    assert parse(page).summary_rows == 1 + 4 * 3  # header; forking failed
    for header in ("backend", "load", "req/s", "good req/s", "req/s over reps (spread)", "p50 ms", "p99 ms",
                   "errors", "error share", "CPU µs/req", "steal %", "flags"):
        assert f">{header}" in page


def test_flags_are_marked_and_explained(page: str) -> None:
    assert 'class="flag flag-driver-bound"' in page and 'class="flag flag-high-spread"' in page
    assert 'id="flag-driver-bound"' in page and 'id="flag-high-spread"' in page
    assert "a floor for the server" in page
    for flag in ("littles-law", "noisy", "starved", "censored", "dropped"):  # explained even when absent
        assert f'id="flag-{flag}"' in page


def test_failed_backend_has_a_row_pointing_to_its_failure(page: str) -> None:
    row = page[page.index('<tr class="failed-row">'):]
    row = row[:row.index("</tr>")]
    assert "forking" in row and 'href="#failures"' in row and 'id="failures"' in page


def test_failed_backend_shows_its_error_and_stderr_in_details(page: str) -> None:
    details = page[page.index("<details>"):page.index("</details>")]
    assert "forking" in details and "did not come up within 10 s" in details
    assert "BlockingIOError" in details  # the stderr tail


def test_metadata_is_shown(page: str) -> None:
    for expected in ("bench-1", "Intel(R) Xeon(R) Platinum 8375C", "3.11.9", "sha256", "pinning"):
        assert expected in page


@pytest.mark.parametrize("status, words", [("interrupted", "interrupted"), ("failed", "the run failed")])
def test_an_unfinished_run_says_so(results: dict[str, Any], status: str, words: str) -> None:
    assert words in render_report(Run.of({**results, "status": status}), [])


SCRIPT = "<script>alert(1)</script>"


def _with_script(value: Any) -> Any:
    """`value` with SCRIPT after every string value in it (keys are the schema's names)."""
    if isinstance(value, str):
        return value + SCRIPT
    if isinstance(value, dict):
        return {key: _with_script(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_script(item) for item in value]
    return value


@pytest.mark.parametrize("run", sorted(path.name for path in RUNS.iterdir()))
def test_no_string_of_a_results_file_reaches_the_page_as_markup(run: str) -> None:
    """A hand-edited results.json: SCRIPT after every string of every stored run."""
    page = render_report(Run.of(_with_script(read_results(RUNS / run))), [])
    assert "<script" not in page.lower() and "&lt;script&gt;" in page


def test_numbers_of_a_results_file_that_are_not_numbers_never_reach_the_page(results: dict[str, Any]) -> None:
    """A step's users and repetition are numbers in any file the harness wrote: a hand-edited
    one with markup there is refused when it is read, naming the key, before any page is drawn."""
    flagged = next(i for i, step in enumerate(results["steps"]) if step.get("flags"))
    steps = [dict(step) for step in results["steps"]]
    steps[flagged]["repetition"] = SCRIPT
    with pytest.raises(ResultsError, match=rf"steps\[{flagged}\]\.repetition: must be an integer"):
        render_report(Run.of({**results, "steps": steps}), [])


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(tmp: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [_chromium() or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp / 'profile'}", *args],
        capture_output=True, timeout=CHROMIUM_TIMEOUT_S, check=False)


# The first screen a reader sees, and a narrow window: nothing may run off the right edge.
FIRST_SCREEN = (1300, 900)
NARROW = 800
# Loaded beside report.html, it frames the page at both widths and writes what the browser
# laid out into #measured, for --dump-dom to print: one browser launch measures both.
MEASURE_PAGE = """<!DOCTYPE html><html><body>
<iframe id="wide" src="report.html" width="%(wide)d" height="%(high)d"></iframe>
<iframe id="narrow" src="report.html" width="%(narrow)d" height="%(high)d"></iframe>
<pre id="measured">not measured</pre>
<script>
function measure(id) {
  const doc = document.getElementById(id).contentDocument;
  const top = (selector) => { const found = doc.querySelector(selector); return found ? found.getBoundingClientRect().top : null; };
  return {scroll_width: doc.documentElement.scrollWidth, client_width: doc.documentElement.clientWidth,
          verdict: top("#verdict"), headline: top("figure.headline"), findings: top("#findings"),
          images: doc.images.length, summary_rows: doc.querySelectorAll("table.summary tr:not(.failed-row)").length};
}
window.addEventListener("load", () => {
  document.getElementById("measured").textContent = JSON.stringify({wide: measure("wide"), narrow: measure("narrow")});
});
</script></body></html>
"""


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (apt-get install chromium)")
def test_chromium_renders_the_verdict_and_the_headline_chart_on_the_first_screen(report: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread
    import numpy as np

    width, height = FIRST_SCREEN
    shot = tmp_path / "shot.png"
    done = _headless(tmp_path, f"--screenshot={shot}", f"--window-size={width},{height}", report.resolve().as_uri())
    assert shot.exists(), done.stderr.decode(errors="replace")[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0.05, "the screenshot is blank"
    # The headline chart drew on the first screen: iterative's red, in its line and legend.
    red = np.all(np.abs(pixels * 255 - (214, 39, 40)) < 30, axis=-1).sum()
    assert red > 300, f"only {red} iterative-red pixels on the first screen: no chart there?"

    measure = report.parent / "measure.html"
    measure.write_text(MEASURE_PAGE % {"wide": width, "narrow": NARROW, "high": height}, encoding="utf-8")
    dom = _headless(tmp_path, "--allow-file-access-from-files", "--dump-dom", measure.resolve().as_uri())
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom.stdout.decode("utf-8", errors="replace"), re.S)
    assert found, dom.stderr.decode(errors="replace")[-2000:]
    laid_out = json.loads(html.unescape(found.group(1)))
    for window, seen in laid_out.items():
        assert seen["scroll_width"] <= seen["client_width"], f"{window}: the page runs off the right edge: {seen}"
        assert 0 < seen["verdict"] < seen["headline"] < min(height, seen["findings"]), f"{window}: {seen}"
        assert seen["images"] == 8 and seen["summary_rows"] == 13, f"{window}: {seen}"


def test_a_contended_step_is_explained_in_the_warnings_and_the_legend() -> None:
    """findings-hello's asyncio at 32 users as a machine busy with other processes records it:
    12.5% of its server CPU (0) used by others, flagged contended."""
    results = read_results(RUNS / "findings-hello")
    for step in results["steps"]:
        if step["backend"] == "asyncio" and step["users"] == 32:
            step["server"]["others_percent"] = 12.5
            step["server_cpus"] = [0]
            step["flags"].append("contended")
    page = render_report(Run.of(results), [])
    assert 'id="flag-contended"' in page and "flag flag-contended" in page
    assert ("other processes of this machine used 12.5% of the server&#x27;s CPUs (0) (over 5%; not the "
            "server&#x27;s tree, not the driver)") in page
