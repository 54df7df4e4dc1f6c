"""The request target, split as cheroot's proxy mode splits it.

CherryPy applications have always received absolute targets
(``GET http://host/path``) as well as origin-form ones, ``OPTIONS *`` and
``CONNECT host:port``; :func:`split_target` turns each into the scheme
(when the target names one), the percent-decoded path (``%2F`` kept, so
that an encoded slash never becomes a path separator) and the query string.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["TargetError", "split_target"]

_QUOTED_SLASH = re.compile(rb"(?i)%2F")


class TargetError(ValueError):
    """A request target the server refuses (400), with the reason."""


def split_target(method: bytes, target: bytes) -> tuple[bytes, bytes, bytes]:
    """Return ``(scheme, path, query)`` for ``target``; ``scheme`` is empty unless it names one."""
    if (
        target[:1] == b"/"
        and target[1:2] != b"/"
        and b"%" not in target
        and b"#" not in target
        and method != b"CONNECT"
    ):
        # The common case: an origin-form target with nothing to decode.
        path, _, query = target.partition(b"?")
        return b"", path, query
    try:
        scheme, authority, path, query, fragment = urllib.parse.urlsplit(target)
    except (UnicodeError, ValueError):
        raise TargetError("Malformed Request-URI") from None
    if method == b"OPTIONS":
        path = target if scheme or authority else path
    elif method == b"CONNECT":
        # The application sees the authority as a path, as in CherryPy.
        return b"", b"/" + _authority_form(target), b""
    else:
        if not target.startswith(b"/") and not (scheme or authority):
            raise TargetError(
                "Invalid path in Request-URI: request-target must contain origin-form "
                'which starts with absolute-path (URI starting with a slash "/").'
            )
        if fragment:
            raise TargetError("Illegal #fragment in Request-URI.")
        path = b"%2F".join(urllib.parse.unquote_to_bytes(x) for x in _QUOTED_SLASH.split(path))
    if not path.startswith(b"/"):
        path = b"/" + path
    return scheme, path, query


def _authority_form(target: bytes) -> bytes:
    """``host:port`` of a CONNECT request, or TargetError."""
    parts = urllib.parse.urlsplit(b"//" + target)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.netloc != target or not port or parts.scheme or parts.path or parts.query:
        raise TargetError(
            "Invalid path in Request-URI: request-target must match authority-form."
        )
    return target
