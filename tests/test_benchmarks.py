"""The benchmark scripts run to the end and print their results (with tiny durations)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from bus_support import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="benchmarks/prefork.py needs wrk")
def test_prefork_benchmark_prints_a_ratio_per_process_count_and_level() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "prefork.py"), "--duration", "1", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ratios = re.findall(
        r"^  (\d) process\(es\), (\d+) connections: ratio morello/cheroot = \d+\.\d\d",
        result.stdout,
        re.MULTILINE,
    )
    assert sorted(ratios) == [("1", "10"), ("1", "64"), ("2", "10"), ("2", "64")], result.stdout
    # Each line of the summary has the rate, both percentiles and their ratio.
    summary = re.findall(
        r"^  \d process\(es\) (?:cheroot|morello) +\d+ req/s +p50 +[\d.]+ ms +p99 +[\d.]+ ms"
        r" +p99/p50 +[\d.]+",
        result.stdout,
        re.MULTILINE,
    )
    assert len(summary) == 8, result.stdout
    assert "morello p99/p50 = " in result.stdout
