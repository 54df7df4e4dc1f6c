"""The benchmark scripts run to the end and print their results (with tiny durations)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from bus_support import REPO_ROOT

BENCHMARKS = REPO_ROOT / "benchmarks"


def run_benchmark(script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/SCRIPT`` for one short round; it must end well."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--duration", "1", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.skipif(shutil.which("wrk") is None, reason="benchmarks/prefork.py needs wrk")
def test_prefork_benchmark_prints_a_ratio_per_process_count_and_level() -> None:
    result = run_benchmark("prefork.py", timeout=100)
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


@pytest.mark.skipif(shutil.which("wrk") is None, reason="benchmarks/peers.py needs wrk")
def test_peers_benchmark_measures_every_server_and_prints_the_ratios() -> None:
    result = run_benchmark("peers.py", timeout=150)
    measured = re.findall(
        r"^round 1: (\S.*?) +/ (\d+) connections: +\d+ req/s +p50 +[\d.]+ ms +p99 +[\d.]+ ms",
        result.stdout,
        re.MULTILINE,
    )
    servers = {label for label, _ in measured}
    # morello serve, raw cheroot, gunicorn sync and gthread, uWSGI, granian on
    # CherryPy and granian on morello: each at both levels, in the summary too.
    assert len(servers) == 7, result.stdout
    assert sorted(measured) == sorted((label, level) for label in servers for level in ("16", "64"))
    sleepers = ["granian", "gunicorn gthread", "morello serve"]  # also loaded on /sleep
    for label in servers:
        summary = rf"^    {re.escape(label)} +\d+ req/s .* spread +\d+%"
        best = re.findall(summary, result.stdout, re.MULTILINE)
        assert len(best) == 2 + (label in sleepers), (label, result.stdout)
    for level in ("16", "64"):
        for peer in (r"best peer on CherryPy \([\w ]+\)", "granian on morello"):
            ratio = rf"^  {level} connections: morello serve / {peer} = \d+\.\d\d$"
            assert re.search(ratio, result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^  morello serve p99/p50 at 64 connections = [\d.]+$", result.stdout, re.M)
    # The I/O-bound load, against its ceiling of processes x threads x 20 req/s.
    ceilings = re.findall(
        r"^    (morello serve|gunicorn gthread|granian) +\d+ req/s .*"
        r"ceiling 2 x (\d+) x 20 = (\d+) req/s, ratio \d+\.\d\d$",
        result.stdout,
        re.MULTILINE,
    )
    assert sorted(name for name, _, _ in ceilings) == sleepers, result.stdout
    assert all(int(total) == 2 * int(threads) * 20 for _, threads, total in ceilings)
