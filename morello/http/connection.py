"""The lean request path: a cheroot connection that reads, parses and answers by itself.

cheroot still accepts the connection and wraps it in TLS; its keep-alive
selector collects the request head (:mod:`morello.http.gathering`) and
hands the connection to a pool thread once the head is complete;
:meth:`LeanConnection.communicate`, called on that thread, then

* takes what was received from the connection's buffer
  (:class:`~morello.http.reader.SocketReader`), receiving more there when
  a body needs it;
* serves every complete request in it, in order (pipelining): the head is
  parsed by llhttp and checked (:mod:`morello.http.parser`), handed to
  the application as it is if it offers that (:mod:`morello.http.native`)
  or else as a WSGI environ (:mod:`morello.http.environ`), and the
  response sent (:mod:`morello.http.response`);
* returns to the selector once no complete request is left, keeping any
  partial one in the buffer for the next time the socket is readable.

A refused request gets its 4xx (or 5xx) with ``Connection: close``, and the
connection is closed. Sockets that are not Python sockets (pyOpenSSL's TLS
connections), and WSGI versions other than 1.0, keep cheroot's own path.
"""

from __future__ import annotations

import io
import logging
import socket
import types
from typing import Any

import cheroot.errors
import cheroot.server
from cheroot.errors import MaxSizeExceeded

from morello.http.environ import connection_environ, request_environ
from morello.http.framing import ChunkedBody
from morello.http.native import NativeApp, NativeRequest, Peer, native_server
from morello.http.parser import HeadError, HeadParser, RequestHead, Unparsed, checked_head
from morello.http.reader import BodyPace, HeadTooLarge, SocketReader
from morello.http.response import BodyLongerThanDeclared, Response, refusal
from morello.http.tls import tls_environ

__all__ = ["LeanConnection"]

#: Body bytes read at a time when draining what the application left unread.
DRAIN_SIZE = 65536


class LeanConnection(cheroot.server.HTTPConnection):
    """A cheroot connection serving its requests through the lean path when it can."""

    #: Whether new connections take the lean path (False: cheroot's, for every one).
    lean = True

    def __init__(self, server: Any, sock: Any, *args: Any, **kwargs: Any) -> None:
        self._ssl_env: dict[str, Any] = {}
        super().__init__(server, sock, *args, **kwargs)
        self._heads: HeadParser | None = None
        if (
            self.lean
            and isinstance(sock, socket.socket)
            and getattr(server, "wsgi_version", None) == (1, 0)
        ):
            self.rfile.close()  # cheroot's buffered reader: never used on this path
            self.rfile = SocketReader(sock)
            self._heads = HeadParser(server.protocol == "HTTP/1.1")
            self._peer: Peer | None = None  # set with _native at the first request
            self._native: NativeApp | None = None
            self._scheme = "https" if server.ssl_adapter is not None else "http"
            self._body: Any = None
            self._req: RequestHead | None = None
        #: Whether a request has been answered on this connection.
        self.has_served = False

    @property
    def ssl_env(self) -> dict[str, Any]:
        """The TLS entries of the environ (none for plain HTTP): read once the handshake,
        which :mod:`morello.http.tls` leaves to the first reads, is done."""
        if not self._ssl_env and self.server.ssl_adapter is not None:
            self._ssl_env = tls_environ(self.server.ssl_adapter, self.socket)
        return self._ssl_env

    @ssl_env.setter
    def ssl_env(self, value: dict[str, Any]) -> None:
        self._ssl_env = value

    @property
    def is_lean(self) -> bool:
        """Whether this connection's requests take the lean path."""
        return self._heads is not None

    def communicate(self) -> bool:
        """Serve every complete request received; return whether to keep the connection."""
        if self._heads is None:
            return super().communicate()
        reader: SocketReader = self.rfile
        served = False
        try:
            while True:
                head = reader.take_head(self.server.max_request_header_size)
                if head is None:
                    if served:
                        return True  # the selector wakes us for the rest
                    if not reader.fill():
                        return False
                    continue
                served = True
                if not self._serve(head):
                    return False
        except HeadTooLarge as exc:
            if exc.in_request_line:
                self._refuse(
                    "414 Request-URI Too Long",
                    "The Request-URI sent with the request exceeds the maximum allowed bytes.",
                )
            else:
                self._refuse(
                    "413 Request Entity Too Large",
                    "The headers sent with the request exceed the maximum allowed bytes.",
                )
        except TimeoutError:
            if reader.pending:  # a request had begun
                self._refuse("408 Request Timeout")
        except OSError as exc:
            self._socket_error(exc)
        return False

    def _serve(self, head: bytes) -> bool:
        """Answer one request; return whether the connection may serve another."""
        server = self.server
        try:
            try:
                req = self._heads.parse(head, server.max_request_body_size)  # type: ignore[union-attr]
            except Unparsed:
                req = self._reread(head)
        except HeadError as exc:
            self._refuse(exc.status, exc.message)
            return False
        if req is None:
            return False
        self.has_served = True
        if server.stats["Enabled"]:
            self.requests_seen += 1
        reader: SocketReader = self.rfile
        if req.chunked:
            body: Any = ChunkedBody(reader, server.max_request_body_size)
        else:
            body = cheroot.server.KnownLengthRFile(reader, req.length)
        if req.expect_continue:
            # Sent only if the application reads a body that has not come yet.
            reader.interim = f"{server.protocol} 100 Continue\r\n\r\n".encode("ascii")
        if server.min_body_rate and (req.chunked or req.length > reader.pending):
            # This thread will wait on the client for the body: not forever.
            reader.pace = BodyPace(server.min_body_rate, server.body_rate_grace, reader.pending)
        self._body, self._req = body, req
        response = Response(
            self.socket.sendall, server, req.http11, req.method == b"HEAD", req.close, self._settle
        )
        try:
            self._run_app(req, body, response)
        except TimeoutError:
            # The body stopped coming, or came below the minimum rate.
            if not response.head_sent:
                self._refuse("408 Request Timeout")
            return False
        except OSError as exc:
            if self._socket_error(exc) and not response.head_sent:
                self._refuse("500 Internal Server Error")
            return False
        except BodyLongerThanDeclared as exc:
            server.error_log(str(exc), level=logging.ERROR)
            self._refuse("500 Internal Server Error", str(exc))
            return False
        except MaxSizeExceeded:
            # A chunked body over the limit, read by an application that let
            # the error through: the client still learns why.
            if not response.head_sent:
                self._refuse(
                    "413 Request Entity Too Large",
                    "The entity sent with the request exceeds the maximum allowed bytes.",
                )
            return False
        except Exception as exc:
            server.error_log(repr(exc), level=logging.ERROR, traceback=True)
            if not response.head_sent:
                self._refuse("500 Internal Server Error")
            return False
        finally:
            reader.interim = reader.pace = None
            self._body = self._req = None
        return not response.close and _consumed(body)

    def _reread(self, head: bytes) -> RequestHead | None:
        """Have cheroot's strict reader (the request class) read a head llhttp did not take.

        Returns the head it accepts, or None once its refusal is sent.
        """
        conn = types.SimpleNamespace(rfile=io.BytesIO(head), wfile=io.BytesIO())
        req = self.RequestHandlerClass(self.server, conn)
        req.parse_request()
        if not req.ready:
            answer = conn.wfile.getvalue()
            if answer:
                self.socket.sendall(answer)
            return None
        return checked_head(
            req.method,
            req.uri,
            req.request_protocol.decode("ascii"),
            req.response_protocol == "HTTP/1.1",
            req.inheaders,
            self.server.max_request_body_size,
        )

    def _run_app(self, req: RequestHead, body: Any, response: Response) -> None:
        """Hand the request to the application: natively if it offers that, else with WSGI."""
        peer = self._peer
        if peer is None:
            peer = self._peer = Peer(connection_environ(self))
            self._native = native_server(self.server.wsgi_app)
        if self._native is not None:
            native = NativeRequest(peer, req, body, self._scheme)
            result = self._native(native, response.start_response)
        else:
            environ = request_environ(peer.environ, req, body, self._scheme)
            result = self.server.wsgi_app(environ, response.start_response)
        try:
            for chunk in result:
                if chunk:
                    if not isinstance(chunk, bytes):
                        raise ValueError("WSGI Applications must yield bytes")
                    response.write(chunk)
            if response.status is None:
                raise RuntimeError("The WSGI application never called start_response.")
            response.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _settle(self, response: Response) -> None:
        """Before the head goes out: read what is left of the request body, or close.

        A kept connection must not take unread body bytes for the next
        request. A client still waiting for ``100 Continue`` holds its body
        back, so the connection closes instead.
        """
        body, reader = self._body, self.rfile
        if response.close or _consumed(body):
            return
        if reader.interim is not None:
            reader.interim = None
            response.close = True
            return
        try:
            if isinstance(body, ChunkedBody):
                while body.read(DRAIN_SIZE):
                    pass
            else:
                while body.remaining and body.read(min(body.remaining, DRAIN_SIZE)):
                    pass
        except (ValueError, MaxSizeExceeded, TimeoutError):  # malformed, too large or too slow
            response.close = True
        if not _consumed(body):
            response.close = True

    def _refuse(self, status: str, message: str = "") -> None:
        try:
            self.socket.sendall(refusal(self.server.protocol, status, message))
        except OSError as exc:
            self._socket_error(exc)

    def _socket_error(self, exc: OSError) -> bool:
        """Log ``exc`` unless it only means the client went away; return whether it was logged."""
        if isinstance(exc, TimeoutError) or exc.args[0] in cheroot.errors.socket_errors_to_ignore:
            return False
        self.server.error_log(
            f"socket.error {exc.args[0]!r}", level=logging.WARNING, traceback=True
        )
        return True


def _consumed(body: Any) -> bool:
    """Whether the request body was read to its end."""
    if isinstance(body, ChunkedBody):
        return body.closed
    return not body.remaining
