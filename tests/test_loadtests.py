"""The load-test kit (``loadtests/``): its session check, and short real runs of the runner.

The runs start ``python -m loadtests`` as a subprocess (its own store, master
with two workers and headless locust, all on loopback) for a few seconds, and
check its result line; one run injects lost session updates into the app to
prove that mismatches are caught and fail the run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from bus_support import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from loadtests.checks import MISMATCH, CounterCheck, classify  # noqa: E402
from loadtests.runner import Window, attribute  # noqa: E402

RESULT_LINE = re.compile(
    r"requests=(\d+) rps=(\d+(?:\.\d+)?) p50_ms=(\d+(?:\.\d+)?) p99_ms=(\d+(?:\.\d+)?) "
    r"failures=(\d+) session_mismatches=(\d+)"
)
#: Hard bound of one runner subprocess (it bounds its own parts as well).
RUN_TIMEOUT = 90


# --- the session check ------------------------------------------------------------


def test_counter_check_accepts_the_expected_sequence() -> None:
    check = CounterCheck("alice")
    for value in (1, 2, 3):
        assert check.problem(200, {"user": "alice", "counter": value}, incremented=True) is None
    assert check.problem(200, {"user": "alice", "counter": 3}, incremented=False) is None


def test_counter_check_reports_a_lost_update_once() -> None:
    check = CounterCheck("alice")
    assert check.problem(200, {"user": "alice", "counter": 1}, incremented=True) is None
    problem = check.problem(200, {"user": "alice", "counter": 1}, incremented=True)
    assert problem == f"{MISMATCH}: counter 1, expected 2"
    # The server's value is adopted: the next increment from there is fine.
    assert check.problem(200, {"user": "alice", "counter": 2}, incremented=True) is None


def test_counter_check_reports_another_users_session_and_a_lost_login() -> None:
    check = CounterCheck("alice")
    problem = check.problem(200, {"user": "bob", "counter": 1}, incremented=True)
    assert problem is not None and problem.startswith(MISMATCH) and "'bob'" in problem
    problem = check.problem(401, {"error": "not logged in"}, incremented=False)
    assert problem is not None and problem.startswith(MISMATCH)


def test_counter_check_after_an_unanswered_increment_accepts_both_values() -> None:
    for done in (True, False):
        check = CounterCheck("alice")
        assert check.problem(503, None, incremented=True) is None  # an ordinary failure
        value = 1 if done else 0
        assert check.problem(200, {"user": "alice", "counter": value}, incremented=False) is None
        # Certain again afterwards.
        wrong = {"user": "alice", "counter": value + 2}
        assert check.problem(200, wrong, incremented=True) is not None


def test_failures_are_classified_and_placed_in_windows() -> None:
    assert classify(f"{MISMATCH}: counter 1, expected 2") == "mismatch"
    assert classify("ConnectionResetError(104)") == "error"
    windows = [Window("HUP", 10.0, 12.0), Window("TTIN", 20.0, None)]
    events = [
        {"start": 9.5, "time": 10.1, "kind": "error"},  # in flight when HUP was sent
        {"start": 11.0, "time": 11.2, "kind": "mismatch"},
        {"start": 12.5, "time": 12.6, "kind": "error"},  # between the windows
        {"start": 25.0, "time": 25.1, "kind": "error"},  # in the unfinished window
    ]
    assert attribute(windows, events, run_end=30.0) == (1, 0)
    assert (windows[0].failures, windows[0].mismatches) == (2, 1)
    assert (windows[1].failures, windows[1].mismatches) == (1, 0)


# --- real runs ----------------------------------------------------------------------


def run_loadtest(out: Path, *args: str) -> tuple[int, str, re.Match[str]]:
    """Run ``python -m loadtests`` briefly; return its exit status, output and result line."""
    command = [
        sys.executable, "-m", "loadtests", "--workers", "2", "--users", "6",
        "--spawn-rate", "6", "--out", str(out), *args,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the load test ran past {RUN_TIMEOUT}s: {exc.stdout}\n{exc.stderr}")
    output = done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    match = RESULT_LINE.fullmatch(lines[-1]) if lines else None
    assert match, f"no result line (exit {done.returncode}):\n{output}"
    return done.returncode, output, match


@pytest.mark.timeout(RUN_TIMEOUT + 10)
@pytest.mark.parametrize(("store", "seconds"), [("file", 4), ("redis", 3)])
def test_short_run_passes(tmp_path: Path, store: str, seconds: int) -> None:
    status, output, result = run_loadtest(tmp_path, "--store", store, "--duration", str(seconds))
    requests, _, _, _, failures, mismatches = result.groups()
    assert (status, failures, mismatches) == (0, "0", "0"), output
    assert int(requests) > 20, output
    assert (tmp_path / "report.html").exists() and (tmp_path / "locust_stats.csv").exists()
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert summary[-1] == result.group(0), summary
    assert any(line.startswith("failures: 0") for line in summary), summary


@pytest.mark.timeout(RUN_TIMEOUT + 10)
def test_injected_session_loss_fails_the_run(tmp_path: Path) -> None:
    status, output, result = run_loadtest(
        tmp_path, "--store", "file", "--duration", "4", "--inject-session-loss", "3"
    )
    _, _, _, _, failures, mismatches = result.groups()
    assert status == 1, output
    assert int(mismatches) > 0 and int(failures) >= int(mismatches), output
