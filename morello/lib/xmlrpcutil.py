"""XML-RPC over HTTP: reading the call, writing the answer (``cherrypy.lib.xmlrpcutil``).

An XML-RPC server answers every call with ``200 OK``, faults included:
clients such as :mod:`xmlrpc.client` take any other status for a broken
transport and never look at the fault inside.
"""

from __future__ import annotations

import sys
from typing import Any
from xmlrpc.client import Fault, dumps, loads

from morello.serving import serving

#: What :func:`process_body` returns for a body that is not an XML-RPC call:
#: no parameters and an empty method name, which names no method.
MALFORMED_CALL: tuple[tuple[Any, ...], str] = ((), "")


class MalformedCall(ValueError):
    """The request body is not an XML-RPC method call."""


def read_call() -> tuple[tuple[Any, ...], str]:
    """``(params, method_name)`` of the call in the request body.

    Raises :class:`MalformedCall` when the body is not a method call.
    """
    data = serving.request.body.read()
    try:
        params, method = loads(data)
    except Exception as exc:  # expat, marshalling and type errors alike
        raise MalformedCall(f"The request body is not an XML-RPC call ({exc}).") from None
    if method is None:
        # A <methodResponse> parses too, but it calls nothing.
        raise MalformedCall("The request body is not an XML-RPC call (no method name).")
    return params, method


def process_body() -> tuple[tuple[Any, ...], str]:
    """``(params, method_name)`` from the request body, or :data:`MALFORMED_CALL`."""
    try:
        return read_call()
    except MalformedCall:
        return MALFORMED_CALL


def patched_path(path: str) -> str:
    """``path`` as the dispatcher should see it for an XML-RPC call.

    It always ends with a slash (the method name in the body completes it)
    and loses the conventional ``/RPC2`` prefix.
    """
    if not path.endswith("/"):
        path += "/"
    if path.startswith("/RPC2/"):
        path = path[len("/RPC2") :]
    return path


def _set_response(body: bytes) -> None:
    response = serving.response
    response.status = "200 OK"
    response.body = body
    response.headers["Content-Type"] = "text/xml"
    response.headers["Content-Length"] = len(body)


def respond(body: Any, encoding: str = "utf-8", allow_none: bool = False) -> None:
    """Make the response the XML-RPC answer carrying ``body``.

    ``body`` is the method's return value, or a :class:`xmlrpc.client.Fault`
    to answer with that fault. The document is encoded in ``encoding``, which
    its XML declaration names.
    """
    params = body if isinstance(body, Fault) else (body,)
    document = dumps(params, methodresponse=True, encoding=encoding, allow_none=allow_none)
    _set_response(document.encode(encoding, "xmlcharrefreplace"))


def on_error(*args: Any, **kwargs: Any) -> None:
    """Answer the exception being handled as an XML-RPC fault (code 1).

    The ``tools.xmlrpc`` error tool; its config arguments are accepted and
    ignored: faults always go out in UTF-8.
    """
    _set_response(dumps(Fault(1, str(sys.exc_info()[1]))).encode("utf-8"))
