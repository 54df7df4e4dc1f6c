"""Building URLs that point back into the application: ``morello.url``."""

from __future__ import annotations

import urllib.parse
from typing import Any

from morello.serving import serving


def normalize_path(path: str) -> str:
    """Resolve ``.`` and ``..`` segments (surplus ``..`` are dropped)."""
    if "./" not in path:
        return path
    atoms: list[str] = []
    for atom in path.split("/"):
        if atom == "..":
            if atoms:
                atoms.pop()
        elif atom and atom != ".":
            atoms.append(atom)
    normalized = "/".join(atoms)
    return "/" + normalized if path.startswith("/") else normalized


def url(
    path: str = "",
    qs: Any = "",
    script_name: str | None = None,
    base: str | None = None,
    relative: bool | str | None = None,
) -> str:
    """An absolute URL for ``path`` in the current application.

    A path without a leading slash is relative to the current request path;
    ``qs`` may be a string or anything ``urlencode`` takes. ``relative=True``
    gives a URL relative to the current page, ``relative='server'`` one that
    starts at the server root; the default is ``app.relative_urls``.
    """
    if isinstance(qs, (tuple, list, dict)):
        qs = urllib.parse.urlencode(qs)
    if qs:
        qs = "?" + qs

    request = serving.request
    if request.app:
        if not path.startswith("/"):
            # Resolve against the current path, as a browser would.
            current = request.path_info
            if request.is_index is True:
                if not current.endswith("/"):
                    current += "/"
            elif request.is_index is False and current.endswith("/") and current != "/":
                current = current[:-1]
            path = current if path == "" else urllib.parse.urljoin(current, path)
        if script_name is None:
            script_name = request.script_name
        if base is None:
            base = request.base
        new_url = base + script_name + normalize_path(path) + qs
    else:
        if base is None:
            from morello import server

            base = server.base()
        new_url = base + normalize_path((script_name or "") + path) + qs

    if relative is None:
        relative = getattr(request.app, "relative_urls", False)
    if relative == "server":
        # Drop scheme and host: everything from the third slash on.
        return "/" + "/".join(new_url.split("/", 3)[3:])
    if relative:
        current_parts = url(relative=False).split("/")[:-1]
        new_parts = new_url.split("/")
        while current_parts and new_parts and current_parts[0] == new_parts[0]:
            current_parts.pop(0)
            new_parts.pop(0)
        return "/".join([".."] * len(current_parts) + new_parts)
    return new_url
