"""TLS handshakes that no thread waits on.

cheroot's built-in adapter completes the TLS handshake as it accepts the
connection, on the accepting thread, waiting on the client for up to
``socket_timeout``. Here that thread is the one polling for every
connection: a client that opened a connection and sent nothing would stall
the whole worker meanwhile.

:class:`DeferredHandshakeAdapter` wraps the accepted socket without the
handshake. OpenSSL then performs it within the connection's first
receives, which the poll makes without waiting
(:mod:`morello.http.gathering`): a receive that needs more of the client's
handshake raises ``SSLWantReadError``, "nothing yet", as one that has only
part of a record does. The TLS entries of the connection's environ
(``HTTPS``, ``SSL_PROTOCOL``...) are read once the handshake is done
(:func:`tls_environ`). A client that speaks plain HTTP to the TLS port
still gets a plain ``400`` (:func:`refuse_plain_http`).
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from cheroot.ssl.builtin import BuiltinSSLAdapter

from morello.http.response import refusal

__all__ = ["DeferredHandshakeAdapter", "refuse_plain_http", "speaks_plain_http", "tls_environ"]

PLAIN_HTTP_MESSAGE = (
    "The client sent a plain HTTP request, but this server only speaks HTTPS on this port."
)


class DeferredHandshakeAdapter(BuiltinSSLAdapter):
    """cheroot's built-in TLS adapter, leaving the handshake to the connection's first reads."""

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, Any]]:
        """The TLS socket over ``sock``, handshake not done yet, and no environ entries yet."""
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), {}


def tls_environ(adapter: Any, sock: Any) -> dict[str, Any]:
    """The environ entries of ``sock``'s TLS session; none until its handshake is done."""
    if not isinstance(sock, ssl.SSLSocket) or sock.cipher() is None:
        return {}
    return adapter.get_environ(sock)


def speaks_plain_http(error: ssl.SSLError) -> bool:
    """Whether a handshake failed because the client sent an HTTP request instead."""
    return getattr(error, "reason", None) == "HTTP_REQUEST"


def refuse_plain_http(sock: ssl.SSLSocket, protocol: str) -> None:
    """Answer ``400`` in plain text on ``sock``'s TCP connection (not as TLS)."""
    answer = refusal(protocol, "400 Bad Request", PLAIN_HTTP_MESSAGE)
    try:
        socket.socket.send(sock, answer)
        # What the client sent after what OpenSSL read: unread, the close
        # would reset the connection before the client read the answer.
        while socket.socket.recv(sock, 65536):
            pass
    except OSError:
        pass  # gone, or nothing more to read
