"""Locust users for the demo app (``loadtests/app.py``).

Three kinds of visitors, by weight:

* :class:`BrowsingUser` (3): HTML pages, product pages, static files, now
  and then the slow endpoint;
* :class:`ApiUser` (2): the JSON API (echo, catalogue pages, items, one
  invalid body that must get a 400);
* :class:`SessionUser` (2): log in, increment the session counter a few
  times, read it back, log out, check that the session is gone. It keeps
  the value it expects and marks a request failed with a message starting
  with ``MISMATCH`` (``loadtests/checks.py``) when the server's session says otherwise (another
  user, a lost update, still logged in after logout): a lost or mixed-up
  session.

When the environment variable ``LOADTESTS_EVENTS`` names a file, every failed
request is appended to it as one JSON line ``{"time", "start", "name",
"kind", "error"}`` (``kind`` is ``"mismatch"`` or ``"error"``; ``start`` and
``time`` are the epoch seconds the request started and ended): the runner
counts session mismatches and places failures in time from it.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gevent
import locust.stats
from locust import HttpUser, between, events, task

try:
    from loadtests.checks import EVENTS_ENV, MISMATCH, CounterCheck, classify
except ImportError:  # locust started from outside the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from loadtests.checks import EVENTS_ENV, MISMATCH, CounterCheck, classify

PRODUCT_COUNT = 40
#: Pause between two requests of one user, in seconds.
WAIT = (0.05, 0.25)


# --- the failure log -------------------------------------------------------------

_events_lock = threading.Lock()


@events.request.add_listener
def _record_failure(
    request_type: str,
    name: str,
    response_time: float | None,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    path = os.environ.get(EVENTS_ENV)
    if exception is None or not path:
        return
    now = time.time()
    error = str(exception) or type(exception).__name__
    # Locust wraps catch_response failures in CatchResponseError(message).
    line = json.dumps(
        {
            "time": now,
            "start": now - (response_time or 0) / 1000,
            "name": f"{request_type} {name}",
            "kind": classify(error),
            "error": error[:500],
        }
    )
    with _events_lock, open(path, "a", encoding="utf-8") as log:
        log.write(line + "\n")


def _json(response: Any) -> Any:
    """The decoded JSON body, or None if there is none."""
    try:
        return response.json()
    except (ValueError, TypeError, AttributeError):
        return None


@events.test_stop.add_listener
def _write_final_csv(environment: Any, **_: Any) -> None:
    """Let locust's CSV writer run once more now that every user has stopped: it
    rewrites the files every ``CSV_STATS_INTERVAL_SEC`` but not at exit, so
    they would miss the last second of the run."""
    options = getattr(environment, "parsed_options", None)
    if getattr(options, "csv_prefix", None):
        gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC * 1.5)


# --- users -----------------------------------------------------------------------


class BrowsingUser(HttpUser):
    """Reads pages like a visitor: home, products, static files, sometimes slow pages."""

    weight = 3
    wait_time = between(*WAIT)

    def _get_page(self, path: str, name: str | None = None) -> None:
        with self.client.get(path, name=name or path, catch_response=True) as response:
            if response.status_code != 200:
                return  # locust reports the error itself
            if "</html>" not in response.text:
                response.failure("truncated page")

    @task(4)
    def home(self) -> None:
        self._get_page("/")
        self.client.get("/static/style.css")
        self.client.get("/static/app.js")

    @task(3)
    def products(self) -> None:
        self._get_page("/products")

    @task(5)
    def product(self) -> None:
        self._get_page(f"/products/{random.randint(1, PRODUCT_COUNT)}", "/products/[n]")

    @task(1)
    def about(self) -> None:
        self._get_page("/about")

    @task(1)
    def missing_product(self) -> None:
        with self.client.get("/products/9999", catch_response=True) as response:
            if response.status_code == 404:
                response.success()
            else:
                response.failure(f"expected 404, got HTTP {response.status_code}")

    @task(1)
    def slow(self) -> None:
        self.client.get(f"/slow?ms={random.choice((20, 50, 100, 200))}", name="/slow")


class ApiUser(HttpUser):
    """A program using the JSON API."""

    weight = 2
    wait_time = between(*WAIT)

    @task(4)
    def echo(self) -> None:
        document = {"id": uuid.uuid4().hex, "values": [random.random() for _ in range(10)]}
        with self.client.post("/api/echo", json=document, catch_response=True) as response:
            echoed = (_json(response) or {}).get("echo")
            if response.status_code == 200 and echoed != document:
                response.failure("echo differs from the document sent")

    @task(3)
    def catalogue(self) -> None:
        page = random.randint(1, 4)
        self.client.get(f"/api/items?page={page}&per_page=10", name="/api/items?page=[n]")

    @task(3)
    def item(self) -> None:
        self.client.get(f"/api/items/{random.randint(1, PRODUCT_COUNT)}", name="/api/items/[n]")

    @task(2)
    def create(self) -> None:
        item = {"name": f"item {uuid.uuid4().hex[:8]}", "price": round(random.uniform(1, 99), 2)}
        with self.client.post("/api/items", json=item, catch_response=True) as response:
            if response.status_code not in (0, 201) and response.status_code < 400:
                response.failure(f"expected 201, got HTTP {response.status_code}")

    @task(1)
    def create_invalid(self) -> None:
        with self.client.post(
            "/api/items", json={"name": "", "price": -1}, name="/api/items (invalid)",
            catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code == 400:
                response.success()
            else:
                response.failure(f"expected 400, got HTTP {response.status_code}")


class SessionUser(HttpUser):
    """Log in, increment, check, log out, over and over; one step per task run.

    Each simulated user has its own name and cookie jar, so any answer about
    another user's session or a counter other than the one expected is a
    session mismatch.
    """

    weight = 2
    wait_time = between(*WAIT)
    #: Increments per login, at random in this range.
    increments = (3, 8)

    def on_start(self) -> None:
        self.check: CounterCheck | None = None
        self.left = 0
        self.username = f"user-{uuid.uuid4().hex[:12]}"

    @task
    def step(self) -> None:
        if self.check is None:
            self.login()
        elif self.left > 0:
            self.left -= 1
            self.counter_request("POST", "/counter/increment", incremented=True)
        elif self.left == 0:
            self.left = -1
            self.counter_request("GET", "/counter", incremented=False)
        else:
            self.logout()

    def login(self) -> None:
        with self.client.post(
            "/login", data={"username": self.username}, catch_response=True
        ) as response:
            # Followed the 303 to /account, which shows the session's user and counter.
            if response.status_code != 200:
                return  # locust reports the error itself
            if f'data-user="{self.username}"' not in response.text:
                response.failure(f"{MISMATCH}: /account after login shows another user")
                return
            if 'id="counter">0<' not in response.text:
                response.failure(f"{MISMATCH}: a fresh login does not start at counter 0")
                return
        self.check = CounterCheck(self.username)
        self.left = random.randint(*self.increments)

    def counter_request(self, method: str, path: str, *, incremented: bool) -> None:
        assert self.check is not None
        with self.client.request(method, path, catch_response=True) as response:
            payload = _json(response)
            status = response.status_code
            problem = self.check.problem(status, payload, incremented=incremented)
            if problem is not None:
                response.failure(problem)
                if status == 401:
                    self.check = None  # start over with a new login
            elif status not in (0, 200) and status < 400:
                response.failure(f"unexpected HTTP {status}")
            # Otherwise locust reports errors (no answer, 4xx, 5xx) by itself.

    def logout(self) -> None:
        self.check = None  # whatever happens, the next step logs in again
        with self.client.post("/logout", catch_response=True) as response:
            if response.status_code != 200:  # the 303 to / was followed
                return  # locust reports the error itself
        with self.client.get("/counter", name="/counter (after logout)", catch_response=True) as r:
            if r.status_code == 200:
                r.failure(f"{MISMATCH}: still logged in after logout")
            elif r.status_code == 401:
                r.success()
