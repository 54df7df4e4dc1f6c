"""The session check of the load tests, free of locust (importing locust patches the
process with gevent), so the runner and unit tests can use it."""

from __future__ import annotations

from typing import Any

#: Message prefix of failures that are session mismatches.
MISMATCH = "session mismatch"
#: Environment variable naming the failure log (JSON lines).
EVENTS_ENV = "LOADTESTS_EVENTS"


class CounterCheck:
    """What one logged-in session should contain, and the check of an answer.

    ``possible`` holds the counter values the server may have: one, except
    after an increment that failed without an answer (the server may or may
    not have counted it), when both are accepted until the next answer.
    """

    def __init__(self, user: str) -> None:
        self.user = user
        self.possible = {0}

    def problem(self, status: int, payload: Any, *, incremented: bool) -> str | None:
        """Why the answer (``status``, decoded JSON ``payload``) of a counter request is
        not what this session should give, or None if it is. ``incremented``: the
        request was an increment, so the counter should have gone up by one.
        Adopts the server's value after a mismatch, so one loss counts once."""
        accepted = {value + 1 for value in self.possible} if incremented else self.possible
        if status == 401:
            return f"{MISMATCH}: {self.user} is not logged in any more"
        if status != 200 or not isinstance(payload, dict):
            self.lost_answer(incremented=incremented)
            return None  # not a session answer at all: an ordinary failure
        user, counter = payload.get("user"), payload.get("counter")
        if user != self.user:
            return f"{MISMATCH}: got the session of {user!r} instead of {self.user!r}"
        self.possible = {counter} if isinstance(counter, int) else {0}
        if counter not in accepted:
            wanted = " or ".join(str(value) for value in sorted(accepted))
            return f"{MISMATCH}: counter {counter!r}, expected {wanted}"
        return None

    def lost_answer(self, *, incremented: bool) -> None:
        """A counter request failed without a usable answer."""
        if incremented:
            self.possible = self.possible | {value + 1 for value in self.possible}


def classify(error: str) -> str:
    """``"mismatch"`` for a session mismatch failure message, ``"error"`` otherwise."""
    return "mismatch" if str(error).startswith(MISMATCH) else "error"
