"""``/metrics`` of a real master stays exact while workers come and go.

Each test keeps a bounded client load running while workers exit (scaled
down, rolled, recycled, stopped), then compares the requests the clients got
answered with ``morello_requests_total``: exiting workers report their final
counts, so the two must be equal, not merely close.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest
from prefork_support import Load, MasterProcess, running_master, wait_for, write_app

pytestmark = pytest.mark.timeout(120)

#: Seconds between heartbeats: long, so that an exiting worker has almost always
#: served requests since its last one (they are lost unless it reports them).
HEARTBEAT = 3.0
#: How long the counters of live workers may take to arrive.
SETTLE = 2 * HEARTBEAT


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    (tmp_path / "site.conf").write_text(f"[global]\nmaster.heartbeat_interval = {HEARTBEAT}\n")
    return tmp_path


def metric(master: MasterProcess, name: str, **labels: str) -> float | None:
    """One sample of the master's ``/metrics``, or None when it is absent."""
    code, text = master.control("GET", "/metrics")
    assert code == 200, text
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    wanted = f"{name}{{{inner}}}" if labels else name
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == wanted:
            return float(value)
    return None


def restarts(master: MasterProcess) -> dict[str, float | None]:
    reasons = ("crash", "recycle", "rollout", "scale")
    return {r: metric(master, "morello_worker_restarts_total", reason=r) for r in reasons}


def assert_every_answer_counted(master: MasterProcess, load: Load) -> None:
    """Stop ``load``; the counter must reach exactly what the clients got, soon."""
    load.stop()
    load.assert_none_failed(master)
    wait_for(
        lambda: metric(master, "morello_requests_total") == load.ok,
        SETTLE,
        f"morello_requests_total == {load.ok} answered requests",
    )


def test_scale_down_loses_no_request_from_the_counters(app_dir: Path) -> None:
    with running_master(app_dir, "-c", "site.conf", workers=3) as master:
        with Load(master.url) as load:
            wait_for(load.served_more(200))
            assert master.control("POST", "/scale?workers=1")[0] == 200
            survivor = master.wait_ready(1)
            wait_for(load.served_more(50))
        assert_every_answer_counted(master, load)
        assert restarts(master) == {"crash": 0, "recycle": 0, "rollout": 0, "scale": 2}
        assert master.status()["master"]["restarts"] == 2
        # A crash is told apart from the retirements.
        (victim,) = survivor
        os.kill(victim, signal.SIGKILL)
        master.wait_ready(1, exclude={victim})
        assert restarts(master) == {"crash": 1, "recycle": 0, "rollout": 0, "scale": 2}


def test_rolling_restart_loses_no_request_from_the_counters(app_dir: Path) -> None:
    with running_master(app_dir, "-c", "site.conf", workers=2) as master:
        with Load(master.url) as load:
            old = master.worker_pids()
            wait_for(load.served_more(100))
            master.send(signal.SIGHUP)
            master.wait_ready(2, exclude=old)
            wait_for(load.served_more(50))
        assert_every_answer_counted(master, load)
        assert restarts(master) == {"crash": 0, "recycle": 0, "rollout": 2, "scale": 0}


def test_max_requests_recycling_loses_no_request_from_the_counters(app_dir: Path) -> None:
    with running_master(app_dir, "-c", "site.conf", "--max-requests", "150", workers=2) as master:
        first = master.worker_pids()
        with Load(master.url) as load:
            master.wait_ready(2, exclude=first)
            wait_for(load.served_more(50))
        assert_every_answer_counted(master, load)
        recycled = restarts(master)
        assert recycled["recycle"] >= 2
        assert recycled["crash"] == recycled["rollout"] == recycled["scale"] == 0


def test_graceful_stop_counts_every_answered_request(app_dir: Path) -> None:
    master = MasterProcess(app_dir, "-c", "site.conf", workers=2).start()
    try:
        master.wait_ready(2)
        with Load(master.url) as load:
            wait_for(load.served_more(200))
            master.send(signal.SIGTERM)
            assert master.wait_exit() == 0
        served = re.findall(r"its workers served (\d+) request\(s\)", master.log())
        assert served and int(served[-1]) == load.ok
    finally:
        master.stop()
