"""Exceptions that steer a request: HTTP errors, redirects, internal redirects.

Raising :class:`HTTPError`, :class:`HTTPRedirect` or :class:`NotFound` from a
handler or a hook sets the response accordingly; :class:`InternalRedirect`
restarts the request at another path without a round trip to the client.
"""

from __future__ import annotations

import contextlib
import html
import sys
import traceback
import urllib.parse
from collections.abc import Iterator
from typing import Any

from morello.lib.httputil import valid_status
from morello.serving import serving


class MorelloException(Exception):
    """Base class for the exceptions morello raises on purpose."""


#: CherryPy's name for :class:`MorelloException`.
CherryPyException = MorelloException


class TimeoutError(MorelloException):  # noqa: A001 - CherryPy's public name
    """A request ran past its allotted time."""


class InternalRedirect(MorelloException):
    """Restart the current request at ``path`` (with ``query_string``).

    The new request keeps the method, headers and body of the original one;
    ``request.params`` are rebuilt from the new query string. A relative path
    is resolved against the current ``path_info``.
    """

    def __init__(self, path: str, query_string: str = "") -> None:
        self.request = request = serving.request
        self.query_string = query_string
        if "?" in path:
            path, self.query_string = path.split("?", 1)
        # Relative to the current path, like a browser would resolve it.
        self.path = urllib.parse.urljoin(request.path_info, path)
        super().__init__(self.path, self.query_string)


_REDIRECT_NOTES = {
    300: "Multiple choices; the first is at",
    301: "Moved permanently to",
    302: "Found at",
    303: "See other:",
    307: "Temporarily redirected to",
    308: "Permanently redirected to",
}


class HTTPRedirect(MorelloException):
    """Redirect the client to one or more URLs.

    ``urls`` may be a string or a list; relative URLs are joined to the
    current request URL. ``status`` defaults to 303 for HTTP/1.1 clients and
    302 for HTTP/1.0 clients and must be between 300 and 399.
    """

    def __init__(
        self, urls: str | list[str], status: int | None = None, encoding: str | None = None
    ):
        self.encoding = encoding or "utf-8"
        if isinstance(urls, (str, bytes)):
            urls = [urls]
        from morello.urls import url as current_url

        base = current_url()
        self.urls = [
            urllib.parse.urljoin(base, u.decode(self.encoding) if isinstance(u, bytes) else u)
            for u in urls
        ]
        if status is None:
            status = 303 if serving.request.protocol >= (1, 1) else 302
        else:
            status = int(status)
            if status < 300 or status > 399:
                raise ValueError("status must be between 300 and 399.")
        self.status = status
        super().__init__(self.urls, status)

    @property
    def code(self) -> int:
        """The redirect status code."""
        return self.status

    def set_response(self) -> None:
        """Write this redirect into the current response (without raising)."""
        response = serving.response
        response.status = status = self.status
        headers = response.headers
        if status in _REDIRECT_NOTES:
            headers["Content-Type"] = "text/html;charset=utf-8"
            headers["Location"] = self.urls[0]
            note = _REDIRECT_NOTES[status]
            links = [
                f'{note} <a href="{html.escape(u)}">{html.escape(u, quote=False)}</a>.'
                for u in self.urls
            ]
            response.body = "<br />\n".join(links).encode("utf-8")
        elif status == 304:
            # A 304 carries no entity, so none of the entity headers apply.
            for key in (
                "Allow", "Content-Encoding", "Content-Language", "Content-Length",
                "Content-Location", "Content-MD5", "Content-Range", "Content-Type",
                "Expires", "Last-Modified",
            ):  # fmt: skip
                headers.pop(key, None)
            response.body = None
        elif status == 305:
            headers["Location"] = self.urls[0]
            response.body = None
        else:
            raise ValueError(f"The {status} status code is unknown.")
        headers.pop("Content-Length", None)

    def __call__(self) -> None:
        """Use this exception as a request handler: raise it."""
        raise self


# Headers describing the original content, which the error page replaces.
_ENTITY_HEADERS = (
    "Accept-Ranges", "Age", "ETag", "Location", "Retry-After", "Vary",
    "Content-Encoding", "Content-Length", "Expires", "Content-Location",
    "Content-MD5", "Last-Modified",
)  # fmt: skip


def clean_headers(status: int) -> None:
    """Drop response headers that belonged to the content an error replaces."""
    headers = serving.response.headers
    for key in _ENTITY_HEADERS:
        headers.pop(key, None)
    if status != 416:
        # Only a 416 may say which range would have been satisfiable.
        headers.pop("Content-Range", None)


class HTTPError(MorelloException):
    """Answer the request with an HTTP error status (400-599).

    ``status`` is an int or a ``"code reason"`` string; ``message`` is shown
    in the error page (a default for the status otherwise).
    """

    def __init__(self, status: int | str = 500, message: str | None = None) -> None:
        self.status = status
        try:
            self.code, self.reason, default_message = valid_status(status)
        except ValueError as exc:
            raise self.__class__(500, exc.args[0]) from None
        if self.code < 400 or self.code > 599:
            raise ValueError("status must be between 400 and 599.")
        self._message = message or default_message
        super().__init__(status, message)

    def set_response(self) -> None:
        """Write this error into the current response (without raising)."""
        response = serving.response
        clean_headers(self.code)
        response.status = self.status
        tb = format_exc() if serving.request.show_tracebacks else None
        response.body = self.get_error_page(self.status, traceback=tb, message=self._message)

    def get_error_page(self, *args: Any, **kwargs: Any) -> Any:
        return get_error_page(*args, **kwargs)

    def __call__(self) -> None:
        """Use this exception as a request handler: raise it."""
        raise self

    @classmethod
    @contextlib.contextmanager
    def handle(
        cls,
        exception: type[BaseException] | tuple[type[BaseException], ...],
        status: int | str = 500,
        message: str = "",
    ) -> Iterator[None]:
        """Turn ``exception`` raised inside the block into this HTTP error."""
        try:
            yield
        except exception as exc:
            raise cls(status, message or str(exc)) from exc


class NotFound(HTTPError):
    """404 for ``path`` (the current request path when omitted)."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            request = serving.request
            path = request.script_name + request.path_info
        self.args = (path,)
        super().__init__(404, f"The path '{path}' was not found.")


ERROR_PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>%(status)s</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; }
#traceback { color: #a00; }
#powered_by { margin-top: 2em; font-size: small; color: #666; }
</style>
</head>
<body>
<h2>%(status)s</h2>
<p>%(message)s</p>
<pre id="traceback">%(traceback)s</pre>
<div id="powered_by">Served by morello %(version)s</div>
</body>
</html>
"""


def get_error_page(status: int | str, **kwargs: Any) -> Any:
    """Render the error page for ``status`` as bytes (or a byte iterator).

    ``kwargs`` (status, message, traceback, version) are HTML-escaped and
    interpolated into ``request.error_page[code]`` (or ``['default']``),
    which is a template file path or a callable; else the built-in page.
    """
    from morello import __version__

    try:
        code, reason, message = valid_status(status)
    except ValueError as exc:
        raise HTTPError(500, exc.args[0]) from None
    defaults = {
        "status": f"{code} {reason}",
        "message": message,
        "traceback": "",
        "version": __version__,
    }
    for key, default in defaults.items():
        if kwargs.get(key) is None:
            kwargs[key] = default
    kwargs = {k: "" if v is None else html.escape(str(v), quote=False) for k, v in kwargs.items()}

    pages = serving.request.error_page
    custom = pages.get(code) or pages.get("default")
    template = ERROR_PAGE_TEMPLATE
    if custom:
        try:
            if callable(custom):
                return _encode_page(custom(**kwargs))
            with open(custom, newline="") as f:
                template = f.read()
        except Exception:
            failure = traceback.format_exception_only(*sys.exc_info()[:2])[-1]
            note = kwargs["message"] + "<br />" if kwargs["message"] else ""
            kwargs["message"] = (
                note + "In addition, the custom error page failed:\n<br />" + failure
            )
    serving.response.headers["Content-Type"] = "text/html;charset=utf-8"
    return (template % kwargs).encode("utf-8")


def _encode_page(result: Any) -> Any:
    from morello.lib import is_iterator

    if is_iterator(result):
        return (chunk.encode("utf-8") if isinstance(chunk, str) else chunk for chunk in result)
    if isinstance(result, str):
        return result.encode("utf-8")
    if not isinstance(result, bytes):
        raise ValueError(
            "error page function did not return bytes, str or an iterator "
            f"- returned object of type {type(result).__name__}."
        )
    return result


def format_exc(exc: BaseException | None = None) -> str:
    """The traceback of ``exc`` (default: the one being handled), or ``''``."""
    if exc is None:
        exc = sys.exc_info()[1]
    if exc is None:
        return ""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def bare_error(
    extrabody: str | bytes | None = None,
) -> tuple[str, list[tuple[str, str]], list[bytes]]:
    """A last-resort plain-text 500 for when the normal error machinery failed.

    Returns ``(status, header_list, body)`` ready for WSGI.
    """
    body = b"Unrecoverable error in the server."
    if extrabody:
        if isinstance(extrabody, str):
            extrabody = extrabody.encode("utf-8")
        body += b"\n" + extrabody
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    return "500 Internal Server Error", headers, [body]
