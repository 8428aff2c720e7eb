"""glibc's allocator, tuned at program start, gives freed large blocks back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.config import TIGHT_BUDGET_MB
from tests.apprunner import ROOT

# Raises glibc's dynamic mmap threshold with one large block, then frees all
# but the last of fifty 2 MiB blocks; prints the RSS left afterwards in MiB.
SCRIPT = """
import sys
from pipeline import allocator
if sys.argv[1] != "default":
    allocator.tune(int(sys.argv[1]))
big = b"\\1" * (16 << 20)
del big
blocks = [b"\\1" * (2 << 20) for _ in range(50)]
del blocks[:-1]
status = open("/proc/self/status").read()
line = next(s for s in status.splitlines() if s.startswith("VmRSS:"))
print(int(line.split()[1]) // 1024)
"""


def rss_after_frees(mode: str, env: dict[str, str] | None = None) -> int:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuned_allocator_returns_freed_large_blocks_to_the_os() -> None:
    untuned = rss_after_frees("default")
    tuned = rss_after_frees("512")

    assert untuned - tuned > 60, (untuned, tuned)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_a_roomy_budget_keeps_glibcs_faster_defaults() -> None:
    untuned = rss_after_frees("default")
    roomy = rss_after_frees(str(TIGHT_BUDGET_MB))

    assert abs(untuned - roomy) < 10, (untuned, roomy)
