"""Callables behind the built-in tools (``cherrypy.lib.cptools``)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import ipaddress
import logging
import re
import types
import typing
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import morello
from morello.errors import HTTPError, HTTPRedirect, InternalRedirect
from morello.lib import is_iterator, trusted_proxies
from morello.lib.httputil import HeaderMap, valid_status
from morello.serving import serving
from morello.urls import url


def validate_since() -> None:
    """Answer a conditional request from the response's ``Last-Modified``.

    An ``If-Unmodified-Since`` other than ``Last-Modified`` fails with 412; an
    ``If-Modified-Since`` equal to it gives 304 to GET and HEAD (412 to other
    methods). As in CherryPy the dates are compared as strings: clients echo
    the ``Last-Modified`` they were given. Does nothing without
    ``Last-Modified`` or for a response that is not a success.
    """
    response = serving.response
    last_modified = response.headers.get("Last-Modified")
    if not last_modified:
        return
    status = valid_status(response.status)[0]
    request = serving.request
    unmodified_since = request.headers.get("If-Unmodified-Since")
    if (
        unmodified_since
        and unmodified_since != last_modified
        and (200 <= status <= 299 or status == 412)
    ):
        raise HTTPError(412)
    if request.headers.get("If-Modified-Since") == last_modified and (
        200 <= status <= 299 or status == 304
    ):
        if request.method in ("GET", "HEAD"):
            raise HTTPRedirect([], 304)
        raise HTTPError(412)


def trailing_slash(
    missing: bool = True, extra: bool = False, status: int | None = None, debug: bool = False
) -> None:
    """Redirect ``/dir`` to ``/dir/`` for index handlers (``missing``) and,
    if ``extra``, ``/page/`` to ``/page`` for the others."""
    request = serving.request
    path_info = request.path_info
    if request.is_index is True:
        if missing and not path_info.endswith("/"):
            raise HTTPRedirect(url(path_info + "/", request.query_string), status=status or 301)
    elif request.is_index is False and extra and path_info.endswith("/") and path_info != "/":
        raise HTTPRedirect(url(path_info[:-1], request.query_string), status=status or 301)


def log_traceback(severity: int = logging.ERROR, debug: bool = False) -> None:
    """Write the traceback of the error being handled to the error log."""
    from morello import log

    log("", "HTTP", severity=severity, traceback=True)


def log_request_headers(debug: bool = False) -> None:
    """Write the request headers to the error log."""
    from morello import log

    lines = [f"  {name}: {value}" for name, value in serving.request.header_list]
    log("\nRequest Headers:\n" + "\n".join(lines), "HTTP")


def log_hooks(debug: bool = False) -> None:
    """Write the hooks attached to this request to the error log."""
    from morello import log
    from morello.hooks import HOOK_POINTS

    hooks = serving.request.hooks
    points = list(HOOK_POINTS) + [p for p in hooks if p not in HOOK_POINTS]
    lines = []
    for point in points:
        lines.append(f"    {point}:")
        lines.extend(f"        {hook!r}" for hook in sorted(hooks.get(point, [])))
    log(f"\nRequest Hooks for {url()}:\n" + "\n".join(lines), "HTTP")


# -- access and request rewriting ----------------------------------------------


def allow(methods: str | Sequence[str] | None = None, debug: bool = False) -> None:
    """Answer 405 unless the request method is one of ``methods``.

    ``methods`` (case-insensitive, default GET and HEAD) also go into the
    ``Allow`` response header; allowing GET allows HEAD.
    """
    if not isinstance(methods, (tuple, list)):
        methods = [methods]  # type: ignore[list-item]
    allowed = [method.upper() for method in methods if method]
    if not allowed:
        allowed = ["GET", "HEAD"]
    elif "GET" in allowed and "HEAD" not in allowed:
        allowed.append("HEAD")
    serving.response.headers["Allow"] = ", ".join(allowed)
    method = serving.request.method
    if debug:
        morello.log(f"Method {method!r}, allowed {allowed!r}", "TOOLS.ALLOW")
    if method not in allowed:
        raise HTTPError(405)


#: Schemes a proxy may claim for the original request.
_PROXY_SCHEMES = ("http", "https")
#: ``host[:port]`` (or an IPv6 literal), optionally with an http(s) scheme in front.
_FORWARDED_HOST = re.compile(
    r"(?:https?://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::[0-9]{1,5})?", re.ASCII
)


def proxy(
    base: str | None = None,
    local: str = "X-Forwarded-Host",
    remote: str = "X-Forwarded-For",
    scheme: str = "X-Forwarded-Proto",
    debug: bool = False,
    trusted: str | Sequence[str] | None = None,
) -> None:
    """Rebuild ``request.base`` and ``request.remote.ip`` behind a reverse proxy.

    The scheme comes from the ``scheme`` header (``X-Forwarded-Ssl: on``
    style headers mean https), the host from the ``local`` header (first
    entry), else from ``base``, else from ``Host``; ``remote.ip`` from the
    first entry of the ``remote`` header. Set a header argument to ``''`` to
    ignore that header. Values that are not a scheme, a host or an IP
    address are ignored, so a forged header cannot put arbitrary text into
    redirect URLs or the logs.

    ``trusted`` (addresses and CIDR networks, see
    :mod:`morello.lib.trusted_proxies`) limits the headers to requests from
    those peers; from any other peer they are ignored (``base`` still applies).
    """
    request = serving.request
    headers = request.headers
    if not trusted_proxies.trusts(trusted, request.remote.ip):
        if debug:
            morello.log(f"peer {request.remote.ip!r} is not trusted", "TOOLS.PROXY")
        local = remote = scheme = ""

    new_scheme = None
    if scheme:
        claimed = _first_entry(headers.get(scheme))
        if debug:
            morello.log(f"{scheme}: {claimed!r}", "TOOLS.PROXY")
        if claimed == "on" and "ssl" in scheme.lower():
            new_scheme = "https"
        elif claimed in _PROXY_SCHEMES:
            new_scheme = claimed
    if not new_scheme:
        new_scheme = request.base.partition("://")[0]

    if local:
        forwarded_host = _first_entry(headers.get(local), lower=False)
        if debug:
            morello.log(f"{local}: {forwarded_host!r}", "TOOLS.PROXY")
        if forwarded_host is not None and _FORWARDED_HOST.fullmatch(forwarded_host):
            base = forwarded_host
    if not base:
        base = headers.get("Host", urllib.parse.urlsplit(request.base).netloc)
    if "://" not in base:
        base = f"{new_scheme}://{base}"
    request.base = base

    if remote:
        address = headers.get(remote)
        if debug:
            morello.log(f"{remote}: {address!r}", "TOOLS.PROXY")
        # The first entry is the client; later ones are the proxies it went through.
        address = _first_entry(address, lower=False)
        if address and _is_ip_address(address):
            request.remote.ip = address


def _first_entry(value: str | None, lower: bool = True) -> str | None:
    """The first comma-separated entry of a header value, stripped."""
    if value is None:
        return None
    entry = value.split(",")[0].strip()
    return entry.lower() if lower else entry


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def ignore_headers(headers: str | Iterable[str] = ("Range",), debug: bool = False) -> None:
    """Drop the named request headers (for example a Range that a front server handles)."""
    if isinstance(headers, str):
        headers = [headers]
    request_headers = serving.request.headers
    for name in headers:
        if request_headers.pop(name, None) is not None and debug:
            morello.log(f"Ignoring request header {name!r}", "TOOLS.IGNORE_HEADERS")


def response_headers(
    headers: Iterable[tuple[str, str]] | Mapping[str, str] | None = None, debug: bool = False
) -> None:
    """Set the given ``(name, value)`` headers on the response."""
    if isinstance(headers, Mapping):
        headers = headers.items()
    if debug:
        morello.log(f"Setting response headers {headers!r}", "TOOLS.RESPONSE_HEADERS")
    for name, value in headers or ():
        serving.response.headers[name] = value


# Error pages should carry these headers too: run even after a hook failed.
response_headers.failsafe = True  # type: ignore[attr-defined]


def referer(
    pattern: str,
    accept: bool = True,
    accept_missing: bool = False,
    error: int = 403,
    message: str = "Forbidden Referer header.",
    debug: bool = False,
) -> None:
    """Refuse (``error``, ``message``) requests by their Referer header.

    With ``accept`` the Referer must match the regular expression
    ``pattern`` (from its start); without, it must not. A request without a
    Referer passes only with ``accept_missing``.
    """
    value = serving.request.headers.get("Referer")
    if value is None:
        if debug:
            morello.log("No Referer header", "TOOLS.REFERER")
        if accept_missing:
            return
    else:
        matched = re.match(pattern, value) is not None
        if debug:
            morello.log(f"Referer {value!r} matches {pattern!r}: {matched}", "TOOLS.REFERER")
        if matched == accept:
            return
    raise HTTPError(error, message)


def redirect(url: str = "", internal: bool = True, debug: bool = False) -> None:
    """Redirect to ``url``: internally (same request, another handler) or with a 303/302."""
    if debug:
        kind = "internally" if internal else "with HTTP"
        morello.log(f"Redirecting {kind} to {url}", "TOOLS.REDIRECT")
    if internal:
        raise InternalRedirect(url)
    raise HTTPRedirect(url)


# -- content negotiation -------------------------------------------------------


def accept(media: str | Sequence[str] | None = None, debug: bool = False) -> str | None:
    """Return the first of ``media`` that the client's Accept header allows.

    Accept ranges are tried best quality first, each against ``media`` in
    the given order (``*/*`` and ``type/*`` included); without an Accept
    header the first of ``media`` is returned. No match: 406, listing
    ``media``. Accept parameters other than ``q`` are not considered.
    """
    if not media:
        return None
    if isinstance(media, str):
        media = [media]
    request = serving.request
    ranges = request.headers.elements("Accept")
    if not ranges:
        return media[0]
    for element in ranges:
        if element.qvalue <= 0:
            continue
        wanted = element.value.lower()
        if wanted == "*/*":
            found: str | None = media[0]
        elif wanted.endswith("/*"):
            found = next((m for m in media if m.lower().startswith(wanted[:-1])), None)
        else:
            found = next((m for m in media if m.lower() == wanted), None)
        if found is not None:
            if debug:
                morello.log(f"{found!r} matches {element.value!r}", "TOOLS.ACCEPT")
            return found
    raise HTTPError(
        406,
        "None of the media types this resource emits matches the Accept header: "
        f"{request.headers.get('Accept')}. It offers: {', '.join(media)}.",
    )


class MonitoredHeaderMap(HeaderMap):
    """Request headers that record the names looked up in them (for ``autovary``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.accessed_headers: set[str] = set()
        super().__init__(*args, **kwargs)


def _recording(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def lookup(self: MonitoredHeaderMap, key: str, *args: Any, **kwargs: Any) -> Any:
        self.accessed_headers.add(str(key).title())
        return method(self, key, *args, **kwargs)

    return lookup


# Every keyed access counts; bulk copies (update, items) do not.
for _name in (
    "__getitem__", "__setitem__", "__delitem__", "__contains__",
    "get", "setdefault", "pop", "elements",
):  # fmt: skip
    setattr(MonitoredHeaderMap, _name, _recording(getattr(HeaderMap, _name)))
del _name

#: Headers ``autovary`` leaves out of Vary: they describe the request body.
AUTOVARY_IGNORED = frozenset({"Content-Disposition", "Content-Length", "Content-Type"})


def autovary(ignore: str | Iterable[str] | None = None, debug: bool = False) -> None:
    """Name every request header the application looked at in ``Vary``.

    From now on the request headers record lookups; just before the response
    is finalized (priority 95) their names, but ``ignore``, are added to the
    Vary response header.
    """
    request = serving.request
    # Build the body parser now, on the unmonitored headers: its own lookups
    # are not a reason for caches to vary.
    request.body  # noqa: B018
    monitored = MonitoredHeaderMap()
    dict.update(monitored, request.headers)
    request.headers = monitored
    if ignore is None:
        ignored = AUTOVARY_IGNORED
    else:
        ignored = frozenset([ignore] if isinstance(ignore, str) else ignore)

    def set_vary() -> None:
        headers = serving.response.headers
        names = {element.value for element in headers.elements("Vary")}
        names = (names | monitored.accessed_headers) - ignored
        if debug:
            morello.log(
                f"Request headers looked up: {monitored.accessed_headers}", "TOOLS.AUTOVARY"
            )
        # An empty Vary is not valid HTTP: leave the header out instead.
        if names:
            headers["Vary"] = ", ".join(sorted(names))

    request.hooks.attach("before_finalize", set_vary, priority=95)


# -- response bodies -----------------------------------------------------------


def flatten(debug: bool = False) -> None:
    """Let the response body be nested iterators (generators yielding generators)."""

    def flattened(chunks: Iterable[Any]) -> Iterator[Any]:
        for chunk in chunks:
            if is_iterator(chunk):
                yield from flattened(chunk)
            else:
                yield chunk

    if debug:
        morello.log("Flattening the response body", "TOOLS.FLATTEN")
    response = serving.response
    response.body = flattened(response.body)


def validate_etags(autotags: bool = False, debug: bool = False) -> None:
    """Answer If-Match / If-None-Match from the response's ETag.

    With ``autotags``, a 200 response without an ETag gets one: the MD5 of
    its (collapsed) body. Only meant for GET-only resources: the tag of a
    POST's answer would describe the wrong thing. For a 2xx response, a
    failed If-Match gives 412 and a matching If-None-Match 304 (GET, HEAD)
    or 412 (other methods).
    """
    response = serving.response
    # This hook runs again for the 304/412 it raises: decide only once.
    if hasattr(response, "ETag"):
        return
    status = valid_status(response.status)[0]
    etag = response.headers.get("ETag")
    if not etag and autotags and status == 200:
        digest = hashlib.md5(response.collapse_body(), usedforsecurity=False).hexdigest()
        etag = response.headers["ETag"] = f'"{digest}"'
    response.ETag = etag
    if debug:
        morello.log(f"Status {status}, ETag {etag!r}", "TOOLS.ETAGS")
    if not 200 <= status <= 299:
        return
    request = serving.request
    conditions = [str(element) for element in request.headers.elements("If-Match")]
    if conditions and conditions != ["*"] and etag not in conditions:
        raise HTTPError(412, f"The ETag {etag!r} is not in If-Match {conditions!r}")
    conditions = [str(element) for element in request.headers.elements("If-None-Match")]
    if conditions == ["*"] or etag in conditions:
        if request.method in ("GET", "HEAD"):
            raise HTTPRedirect([], 304)
        raise HTTPError(412, f"The ETag {etag!r} is in If-None-Match {conditions!r}")


# -- handler arguments ---------------------------------------------------------


def convert_params(
    exception: type[BaseException] | tuple[type[BaseException], ...] = ValueError,
    error: int = 400,
) -> None:
    """Convert request parameters with the page handler's annotations.

    ``def page(self, count: int)`` gets ``int(count)``. A conversion that
    raises ``exception`` (or fails on a repeated parameter, which arrives
    as a list) answers ``error``. Annotations that are not callable are
    skipped; ``X | None`` converts with ``X``.
    """
    request = serving.request
    func = getattr(request.handler, "callable", None)
    if func is None:  # no page handler (a 404 on its way)
        return
    params = request.params
    for name, convert in _converters(func).items():
        if name not in params:
            continue
        value = params[name]
        try:
            params[name] = convert(value)
        except exception as exc:
            raise HTTPError(error, str(exc)) from exc
        except TypeError as exc:
            if not isinstance(value, list):
                raise
            raise HTTPError(error, str(exc)) from exc


def _converters(func: Callable[..., Any]) -> dict[str, Callable[[Any], Any]]:
    """Parameter name -> converter, from ``func``'s annotations (cached per function)."""
    try:
        return _cached_converters(getattr(func, "__func__", func))
    except TypeError:  # an unhashable callable
        return _read_converters(func)


@functools.lru_cache(maxsize=256)
def _cached_converters(func: Callable[..., Any]) -> dict[str, Callable[[Any], Any]]:
    return _read_converters(func)


def _read_converters(func: Callable[..., Any]) -> dict[str, Callable[[Any], Any]]:
    try:
        signature = inspect.signature(func, eval_str=True)
    except Exception:
        # String annotations that do not evaluate here: use them unevaluated
        # (and skip them below, as they are not callable).
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError):
            return {}
    converters = {}
    for parameter in signature.parameters.values():
        convert = _unwrap_optional(parameter.annotation)
        if convert is not parameter.empty and callable(convert):
            converters[parameter.name] = convert
    return converters


def _unwrap_optional(annotation: Any) -> Any:
    """``X`` for ``X | None`` (or ``Optional[X]``); other annotations unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return args[0] if len(args) == 1 else None
    return annotation


# CherryPy keeps the session login flow here (``lib.cptools.SessionAuth``).
from morello.sessions.auth import SessionAuth, session_auth  # noqa: E402, F401
