"""The ``expires`` tool: tell HTTP caches how long a response stays fresh.

It only writes headers; the in-process cache lives in :mod:`morello.lib.caching`
(which re-exports :func:`expires`, CherryPy's ``cherrypy.lib.caching.expires``).
"""

from __future__ import annotations

import datetime

import morello
from morello.lib.httputil import HTTPDate
from morello.serving import serving

#: ``Expires`` for responses that must not be cached: any past date would do;
#: this is CherryPy's, so the headers of both stay identical.
LONG_AGO = HTTPDate(1169942400.0)

#: Response headers showing that the response is meant to be cached.
_CACHE_VALIDATORS = ("ETag", "Last-Modified", "Age", "Expires")


def expires(secs: float | datetime.timedelta = 0, force: bool = False, debug: bool = False) -> None:
    """Set ``Expires`` to ``secs`` seconds after the response started.

    ``secs`` of 0 means "do not cache": ``Expires`` goes into the past and
    ``Pragma: no-cache`` plus (for HTTP/1.1) ``Cache-Control: no-cache,
    must-revalidate`` are added. Without ``force``, only responses that
    already carry one of ETag, Last-Modified, Age or Expires are touched, and
    headers already set are kept; ``force`` sets them all regardless.
    """
    response = serving.response
    headers = response.headers
    if not force and not any(name in headers for name in _CACHE_VALIDATORS):
        if debug:
            morello.log("Not cacheable: no validator or expiry header", "TOOLS.EXPIRES")
        return
    if isinstance(secs, datetime.timedelta):
        secs = secs.days * 86400 + secs.seconds
    if secs == 0:
        if force or "Pragma" not in headers:
            headers["Pragma"] = "no-cache"
        if serving.request.protocol >= (1, 1) and (force or "Cache-Control" not in headers):
            headers["Cache-Control"] = "no-cache, must-revalidate"
        expiry = LONG_AGO
    else:
        expiry = HTTPDate(response.time + secs)
    if force or "Expires" not in headers:
        if debug:
            morello.log(f"Expires: {expiry}", "TOOLS.EXPIRES")
        headers["Expires"] = expiry
