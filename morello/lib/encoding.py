"""The ``encode`` and ``decode`` tools: text in handlers, bytes on the wire."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from morello.errors import HTTPError
from morello.http_response import prepare_iter
from morello.serving import serving


def decode(
    encoding: str | list[str] | None = None, default_encoding: str | list[str] = "utf-8"
) -> None:
    """Set the charsets tried when decoding request body text.

    ``encoding`` replaces the list; ``default_encoding`` is appended to it.
    """
    body = serving.request.body
    if encoding is not None:
        body.attempt_charsets = encoding if isinstance(encoding, list) else [encoding]
    elif default_encoding:
        extra = default_encoding if isinstance(default_encoding, list) else [default_encoding]
        body.attempt_charsets = body.attempt_charsets + extra


class ResponseEncoder:
    """Wrap the page handler so that str output is encoded.

    The charset comes from ``encoding`` if set, else from the client's
    Accept-Charset (``default_encoding`` when it sends none); the chosen
    charset is added to a ``text/*`` Content-Type. A charset the client does
    not accept gives 406.
    """

    default_encoding = "utf-8"
    failmsg = "Response body could not be encoded with %r."
    encoding: str | None = None
    errors = "strict"
    text_only = True
    add_charset = True
    debug = False

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.attempted_charsets: set[str] = set()
        self.body: Any = None
        request = serving.request
        self.oldhandler: Callable[..., Any] | None = request.handler
        if request.handler is not None:
            request.handler = self

    def encode_stream(self, encoding: str) -> bool:
        """Encode a streamed body lazily, chunk by chunk."""
        if encoding in self.attempted_charsets:
            return False
        self.attempted_charsets.add(encoding)
        errors = self.errors

        def encoded(body: Any) -> Iterator[bytes]:
            for chunk in body:
                yield chunk.encode(encoding, errors) if isinstance(chunk, str) else chunk

        self.body = encoded(self.body)
        return True

    def encode_string(self, encoding: str) -> bool:
        """Encode a buffered body now; False if the charset cannot do it."""
        if encoding in self.attempted_charsets:
            return False
        self.attempted_charsets.add(encoding)
        try:
            self.body = [
                chunk.encode(encoding, self.errors) if isinstance(chunk, str) else chunk
                for chunk in self.body
            ]
        except (LookupError, UnicodeError):
            return False
        return True

    def find_acceptable_charset(self) -> str:
        """Encode the body with the best charset the client accepts; return it."""
        request = serving.request
        response = serving.response
        if response.stream:
            encoder = self.encode_stream
        else:
            encoder = self.encode_string
            response.headers.pop("Content-Length", None)

        accepted = request.headers.elements("Accept-Charset")
        names = [element.value.lower() for element in accepted]
        if self.encoding is not None:
            encoding = self.encoding.lower()
            if (not names or "*" in names or encoding in names) and encoder(encoding):
                return encoding
        elif not accepted:
            if encoder(self.default_encoding):
                return self.default_encoding
            raise HTTPError(500, self.failmsg % self.default_encoding)
        else:
            for element in accepted:
                if element.qvalue > 0:
                    candidate = self.default_encoding if element.value == "*" else element.value
                    if encoder(candidate):
                        return candidate
            # ISO-8859-1 is acceptable unless the client excluded it explicitly.
            if "*" not in names and "iso-8859-1" not in names and encoder("iso-8859-1"):
                return "iso-8859-1"

        sent = request.headers.get("Accept-Charset")
        if sent is None:
            message = "Your client did not send an Accept-Charset header."
        else:
            message = f"Your client sent this Accept-Charset header: {sent}."
        tried = ", ".join(sorted(self.attempted_charsets))
        raise HTTPError(406, f"{message} We tried these charsets: {tried}.")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        response = serving.response
        self.body = prepare_iter(self.oldhandler(*args, **kwargs))
        content_type = dict.get(response.headers, "Content-Type")
        if not content_type or not self.add_charset:
            return self.body
        # Fast path for the overwhelmingly common case: default text/html,
        # no charset negotiation, a buffered body.
        if (
            content_type == "text/html"
            and self.encoding is None
            and not response.stream
            and not dict.__contains__(serving.request.headers, "Accept-Charset")
            and self.default_encoding == "utf-8"
            and type(self.body) is list
        ):
            try:
                self.body = [
                    c.encode("utf-8", self.errors) if isinstance(c, str) else c for c in self.body
                ]
            except UnicodeError:
                raise HTTPError(500, self.failmsg % "utf-8") from None
            dict.pop(response.headers, "Content-Length", None)
            dict.__setitem__(response.headers, "Content-Type", "text/html;charset=utf-8")
            return self.body
        element = response.headers.elements("Content-Type")[0]
        if self.text_only and not element.value.lower().startswith("text/"):
            return self.body
        element.params["charset"] = self.find_acceptable_charset()
        response.headers["Content-Type"] = str(element)
        return self.body
