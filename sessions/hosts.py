"""``host:port`` addresses in store settings (memcached ``servers``, Redis Sentinel URLs)."""

from __future__ import annotations


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``(host, port)`` from ``'host'``, ``'host:port'``, ``'[v6 address]:port'`` or a bare
    IPv6 address; the port defaults to ``default_port``.

    Raises ValueError naming ``address`` when the host is empty or the port
    is not a number from 1 to 65535.
    """
    if address.startswith("["):
        host, bracket, port = address[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(f"{address!r}: expected '[address]:port'")
        port = port[1:]
    elif address.count(":") == 1:
        host, port = address.split(":")
    else:  # a bare host name or IPv6 address
        host, port = address, ""
    if not host:
        raise ValueError(f"{address!r} names no host")
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r}: the port must be a number from 1 to 65535")
    return host, int(port)
