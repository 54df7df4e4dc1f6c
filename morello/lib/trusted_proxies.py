"""``tools.proxy.trusted``: the peers whose ``X-Forwarded-*`` headers are believed.

Any client can send ``X-Forwarded-For``, ``-Proto`` and ``-Host``. With
``trusted`` set (a list of addresses and CIDR networks, or one string of
them separated by commas; ``"*"`` for every peer), ``tools.proxy`` uses
those headers only on connections from a listed peer, so a client that
reaches the server directly cannot claim another address or scheme.
Unset, every peer is believed, as in CherryPy; the tool then warns once at
startup in production.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

import morello
from morello.tool import Tool

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The entry that trusts every peer.
ANY_PEER = "*"
# A parsed setting: None trusts every peer.
Networks = tuple[Network, ...] | None


def parse_trusted(setting: Any) -> Networks:
    """The networks a ``tools.proxy.trusted`` value names (None: every peer).

    Raises ValueError naming the entry that is not an address or network.
    """
    if isinstance(setting, str):
        entries = tuple(entry.strip() for entry in setting.split(",") if entry.strip())
    elif isinstance(setting, (list, tuple)) and all(isinstance(e, str) for e in setting):
        entries = tuple(entry.strip() for entry in setting)
    else:
        raise ValueError(
            f"tools.proxy.trusted must be a list of addresses and networks, not {setting!r}"
        )
    return _networks(entries)


# Requests parse the same few settings again and again.
@functools.lru_cache(maxsize=64)
def _networks(entries: tuple[str, ...]) -> Networks:
    if ANY_PEER in entries:
        return None
    networks = []
    for entry in entries:
        try:
            # strict: "10.0.0.1/8" is a typo for a host or for its network.
            networks.append(ipaddress.ip_network(entry))
        except ValueError as exc:
            raise ValueError(
                f"tools.proxy.trusted: {entry!r} is not an IP address or network "
                f"(like '10.0.0.5' or '10.0.0.0/8'): {exc}"
            ) from None
    return tuple(networks)


def trusts(setting: Any, peer: str | None) -> bool:
    """Whether the peer at address ``peer`` may set forwarded headers under ``setting``."""
    if setting is None:
        return True
    networks = parse_trusted(setting)
    if networks is None:
        return True
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        return False  # no address (e.g. a UNIX socket): only "*" trusts it
    # A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d.
    mapped = getattr(address, "ipv4_mapped", None)
    return any(address in network or (mapped is not None and mapped in network)
               for network in networks)  # fmt: skip


class ProxyTool(Tool):
    """``tools.proxy``, whose ``trusted`` setting is checked at engine start."""

    def check_config(self, settings: dict[str, Any]) -> None:
        """Raise ValueError for a bad ``trusted``; warn (once) when it is unset in production."""
        trusted = settings.get("trusted")
        if trusted is not None:
            parse_trusted(trusted)
        elif morello.config.get("environment") == "production":
            morello.checker.warn(
                "tools.proxy is on without tools.proxy.trusted: any client can set "
                "X-Forwarded-For/-Proto/-Host; list your proxies' addresses there",
                "TOOLS.PROXY",
            )
