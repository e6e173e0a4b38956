"""The descriptor limit a scenario needs, raised in a child process (limits are per process)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from support import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CODE = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
from harness.run.limits import ensure_fd_limit
from harness.run.plan import needed_descriptors
from harness.scenario import load_scenario
limit = ensure_fd_limit(needed_descriptors(load_scenario(sys.argv[3])))
print(json.dumps({**limit.to_dict(), "warning": limit.warning}))
"""


def run(soft: int, hard: int, scenario: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CODE, str(soft), str(hard), scenario], capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@pytest.mark.skipif(HARD != resource.RLIM_INFINITY and HARD < 10_500, reason=f"the hard limit here is {HARD}")
def test_c10k_needs_more_than_ten_thousand_and_gets_it_below_the_hard_limit() -> None:
    limit = run(1024, HARD, "c10k")
    assert limit["needed"] > 10_000 and limit["soft"] >= limit["needed"] and limit["warning"] is None


def test_a_small_scenario_leaves_the_limit_alone() -> None:
    assert run(1024, 4096, "quick")["soft"] == 1024


def test_a_hard_limit_too_low_is_raised_if_allowed_or_explained() -> None:
    """Raising the hard limit takes CAP_SYS_RESOURCE (root outside a container, usually)."""
    limit = run(1024, 2048, "c10k")
    if limit["hard"] > 2048:
        assert limit["soft"] >= limit["needed"] and limit["warning"] is None
    else:
        assert limit["soft"] == 2048 and "ulimit -Hn" in limit["warning"] and "2,048" in limit["warning"]
