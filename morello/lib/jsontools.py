"""The ``json_in`` and ``json_out`` tools: JSON request and response bodies.

``json_in`` makes the request body parser turn JSON entities into
``request.json``; ``json_out`` wraps the page handler so that whatever it
returns goes out serialized as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import morello
from morello.errors import HTTPError
from morello.serving import serving

#: The media types ``json_in`` parses by default.
JSON_MEDIA_TYPES = ("application/json", "text/javascript")

#: JSON text to Python (CherryPy's ``_json.decode``, which applications use too).
decode = json.JSONDecoder().decode


def encode(value: Any) -> Iterator[bytes]:
    """``value`` as JSON, in UTF-8 pieces (CherryPy's ``_json.encode``)."""
    for chunk in json.JSONEncoder().iterencode(value):
        yield chunk.encode("utf-8")


def json_processor(entity: Any) -> None:
    """Body processor: parse a JSON entity into ``request.json``.

    The entity must declare its length (411 otherwise, as a chunked body
    would have to be read whole first); a body that is not UTF-8 JSON gives
    400.
    """
    if not entity.headers.get("Content-Length", ""):
        raise HTTPError(411)
    body = entity.read()
    # RecursionError: absurdly nested arrays are bad input too, not a crash.
    with HTTPError.handle((ValueError, RecursionError), 400, "The request body is not valid JSON."):
        serving.request.json = json.loads(body.decode("utf-8"))


def json_in(
    content_type: str | Sequence[str] = JSON_MEDIA_TYPES,
    force: bool = True,
    debug: bool = False,
    processor: Callable[[Any], None] = json_processor,
) -> None:
    """Parse request bodies of ``content_type`` (one or several) with ``processor``.

    The default processor puts the decoded document in ``request.json``.
    With ``force``, bodies of any other type are refused with 415 instead
    of being parsed as forms.
    """
    body = serving.request.body
    media_types = [content_type] if isinstance(content_type, str) else list(content_type)
    if force:
        if debug:
            morello.log(f"Dropping the body processors for {sorted(body.processors)}", "TOOLS.JSON")
        body.processors.clear()
        # An HTTPError instance raises itself when called, as default_proc is.
        body.default_proc = HTTPError(
            415, f"This resource only takes request bodies of type {', '.join(media_types)}"
        )
    for media_type in media_types:
        if debug:
            morello.log(f"Parsing {media_type} bodies as JSON", "TOOLS.JSON")
        body.processors[media_type.lower()] = processor


def json_handler(*args: Any, **kwargs: Any) -> bytes:
    """Page handler used by ``json_out``: the inner handler's result as JSON bytes."""
    value = serving.request._json_inner_handler(*args, **kwargs)
    return json.dumps(value).encode("utf-8")


def json_out(
    content_type: str | None = "application/json",
    debug: bool = False,
    handler: Callable[..., Any] = json_handler,
) -> None:
    """Serialize the page handler's return value to JSON with ``handler``.

    The original handler is kept as ``request._json_inner_handler`` (the
    name CherryPy applications' custom handlers call). ``content_type``
    becomes the response's Content-Type unless it is None.
    """
    request = serving.request
    # No handler: another tool (caching) has answered already.
    if request.handler is None:
        return
    if debug:
        morello.log(f"Serializing the output of {request.handler!r} as JSON", "TOOLS.JSON")
    request._json_inner_handler = request.handler
    request.handler = handler
    if content_type is not None:
        serving.response.headers["Content-Type"] = content_type
