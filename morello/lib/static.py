"""Serving files: ``serve_file``, ``serve_fileobj`` and the ``staticdir`` /
``staticfile`` tools (``cherrypy.lib.static``).

A served file gets ``Last-Modified`` (so conditional requests are answered
by :func:`~morello.lib.cptools.validate_since`), a ``Content-Type`` guessed
from its extension, an optional ``Content-Disposition``, and byte ranges
(:mod:`morello.lib.ranges`). Bodies stream from the file in large chunks.

``staticdir`` never serves anything outside its directory: paths that
climb out of it, lexically or through symlinks, are refused with 403.
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
import unicodedata
import urllib.parse
from typing import Any, BinaryIO

from morello.errors import HTTPError, NotFound
from morello.lib import file_generator
from morello.lib.cptools import validate_since
from morello.lib.httputil import HTTPDate
from morello.lib.ranges import CHUNK_SIZE, requested_ranges, send_ranges
from morello.serving import serving

# The types CherryPy adds to the platform's table; applications rely on them,
# and may change the table (``mimetypes.types_map[ext] = ...``) themselves.
if not mimetypes.inited:
    mimetypes.init()
mimetypes.types_map.update(
    {
        ".bz2": "application/x-bzip2",
        ".dwg": "image/x-dwg",
        ".gz": "application/x-gzip",
        ".ico": "image/x-icon",
    }
)


def _debug(enabled: bool, message: str, context: str = "TOOLS.STATIC") -> None:
    if enabled:
        from morello import log

        log(message, context)


def content_disposition(disposition: str, name: str) -> str:
    """A ``Content-Disposition`` value naming the file ``name`` (RFC 6266).

    ``filename`` carries an ASCII rendering of the name (compatibility
    forms folded, other characters dropped); a name that is not plain ASCII
    is also given in full, UTF-8 encoded, as ``filename*``.
    """
    ascii_name = unicodedata.normalize("NFKC", name).encode("ascii", "ignore").decode("ascii")
    quoted = ascii_name.replace("\\", "\\\\").replace('"', '\\"')
    value = f'{disposition}; filename="{quoted}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
    return value


def serve_file(
    path: str,
    content_type: str | None = None,
    disposition: str | None = None,
    name: str | None = None,
    debug: bool = False,
) -> Any:
    """Make the file at ``path`` the response; return the new body.

    ``path`` must be absolute (a relative one is a :class:`ValueError`). A
    missing file, a directory or any other non-regular file is a
    :class:`~morello.NotFound`. ``content_type`` defaults to the type of the
    file's extension in :mod:`mimetypes`; with a ``disposition``
    (``"attachment"``, ``"inline"``) the response names the file ``name``
    (default: the file's own name).
    """
    if not os.path.isabs(path):
        raise ValueError(f"serve_file needs an absolute path, not {path!r}.")
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        _debug(debug, f"cannot stat {path!r}")
        raise NotFound() from None
    # Directories are the caller's business; FIFOs and devices never end well.
    if not stat.S_ISREG(st.st_mode):
        _debug(debug, f"{path!r} is not a regular file")
        raise NotFound()

    headers = serving.response.headers
    headers["Last-Modified"] = HTTPDate(st.st_mtime)
    validate_since()
    if content_type is None:
        content_type = mimetypes.types_map.get(os.path.splitext(path)[1].lower())
    if content_type is not None:
        headers["Content-Type"] = content_type
    if disposition is not None:
        name = os.path.basename(path) if name is None else name
        headers["Content-Disposition"] = content_disposition(disposition, name)
    _debug(debug, f"serving {path!r} as {content_type!r}")

    try:
        fileobj = open(path, "rb")  # noqa: SIM115 - the response body closes it
    except PermissionError:
        raise HTTPError(403) from None
    except OSError:  # gone since the stat
        raise NotFound() from None
    try:
        return _send(fileobj, 0, st.st_size)
    except BaseException:
        fileobj.close()
        raise


def serve_fileobj(
    fileobj: BinaryIO,
    content_type: str | None = None,
    disposition: str | None = None,
    name: str | None = None,
    debug: bool = False,
) -> Any:
    """Make the rest of the open binary file ``fileobj`` the response; return the body.

    A regular file also gives ``Last-Modified``. Ranges are served when the
    size is known (regular or seekable files) and read with ``seek()``,
    counted from the position the file is at. ``disposition`` is set as
    given, or naming the file ``name`` when one is given.
    """
    offset, length, mtime = _extent(fileobj)
    headers = serving.response.headers
    if mtime is not None:
        headers["Last-Modified"] = HTTPDate(mtime)
        validate_since()
    if content_type is not None:
        headers["Content-Type"] = content_type
    if disposition is not None:
        headers["Content-Disposition"] = (
            disposition if name is None else content_disposition(disposition, name)
        )
    _debug(debug, f"serving a file object of {length!r} bytes as {content_type!r}")
    return _send(fileobj, offset, length)


def _extent(fileobj: BinaryIO) -> tuple[int, int | None, float | None]:
    """``(position, bytes from there to the end, mtime)``; None where unknown."""
    try:
        st: os.stat_result | None = os.fstat(fileobj.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (BytesIO, wrappers)
        st = None
    try:
        seekable = fileobj.seekable()
    except (AttributeError, OSError, ValueError):
        seekable = False
    if not seekable:
        return 0, None, None
    offset = fileobj.tell()
    if st is not None and stat.S_ISREG(st.st_mode):
        return offset, max(st.st_size - offset, 0), st.st_mtime
    end = fileobj.seek(0, os.SEEK_END)
    fileobj.seek(offset)
    return offset, end - offset, None


def _send(fileobj: BinaryIO, offset: int, length: int | None) -> Any:
    """Set the body: the ranges asked for, or everything from ``offset`` on."""
    response = serving.response
    # HTTP/1.0 knows neither ranges nor 206; an unknown length cannot be split.
    if length is not None and serving.request.protocol >= (1, 1):
        response.headers["Accept-Ranges"] = "bytes"
        ranges = requested_ranges(length)
        if ranges:
            send_ranges(fileobj, offset, length, ranges)
            return response.body
    if length is not None:
        response.headers["Content-Length"] = length
    response.body = file_generator(fileobj, CHUNK_SIZE)
    return response.body


def serve_download(path: str, name: str | None = None) -> Any:
    """Serve ``path`` as an ``application/x-download`` attachment named ``name``."""
    return serve_file(path, "application/x-download", "attachment", name)


def _attempt(filename: str, content_types: dict[str, str] | None, debug: bool) -> bool:
    """Serve ``filename`` if it is a file: True when served, False when not found."""
    content_type = None
    if content_types:
        content_type = content_types.get(os.path.splitext(filename)[1][1:])
    _debug(debug, f"trying {filename!r}")
    try:
        serve_file(filename, content_type=content_type, debug=debug)
    except NotFound:
        # Not here: the page handler (or a 404) takes over.
        return False
    return True


def _wanted(tool: str, match: str, debug: bool) -> bool:
    """Whether a static tool should look at the current request at all."""
    request = serving.request
    if request.method not in ("GET", "HEAD"):
        _debug(debug, f"{request.method} is not for static content", tool)
        return False
    if match and not re.search(match, request.path_info):
        _debug(debug, f"{request.path_info!r} does not match {match!r}", tool)
        return False
    return True


def _inside(directory: str, path: str) -> bool:
    """Whether ``path`` is ``directory`` or below it once ``..`` and symlinks are resolved.

    Whole path components are compared, so ``/srv/static-private`` is not
    inside ``/srv/static`` (CherryPy's string-prefix test lets it in).
    """
    base = os.path.realpath(directory)
    try:
        return os.path.commonpath([base, os.path.realpath(path)]) == base
    except ValueError:  # another drive, on Windows
        return False


def staticdir(
    section: str,
    dir: str,
    root: str = "",
    match: str = "",
    content_types: dict[str, str] | None = None,
    index: str = "",
    debug: bool = False,
) -> bool:
    """Serve the file the request path names below the directory ``dir``.

    The part of the path after ``section`` (the config section that switched
    the tool on) is looked up in ``dir``; a relative ``dir`` is joined to
    ``root``, and ``~`` is expanded. Only GET and HEAD are served, and only
    paths matching the regular expression ``match`` (when given).
    ``content_types`` maps extensions without the dot (``"css"``) to types;
    ``index`` is the file served for a directory. Returns True when a file
    was served, so that the page handler is skipped; a path that leads
    out of the directory is a 403.
    """
    request = serving.request
    if not _wanted("TOOLS.STATICDIR", match, debug):
        return False
    dir = os.path.expanduser(dir)
    if not os.path.isabs(dir):
        if not root:
            raise ValueError("tools.staticdir needs an absolute 'dir' or a 'root' to join it to.")
        dir = os.path.join(root, dir)

    if section == "global":
        section = "/"
    section = section.rstrip("\\/")
    branch = request.path_info[len(section) + 1 :].lstrip("\\/")
    # Unquoted once more, as CherryPy does: "%252e" in the URL means ".".
    filename = os.path.join(dir, urllib.parse.unquote(branch))
    if "\x00" in filename:
        return False  # names no file: not found, as in CherryPy
    if not _inside(dir, filename):
        _debug(debug, f"{filename!r} is outside {dir!r}", "TOOLS.STATICDIR")
        raise HTTPError(403)

    if _attempt(filename, content_types, debug):
        return True
    if index:
        index_file = os.path.join(filename, index)
        if not _inside(dir, index_file):
            raise HTTPError(403)
        if _attempt(index_file, content_types, debug):
            request.is_index = filename.endswith(("/", "\\"))
            return True
    return False


def staticfile(
    filename: str,
    root: str | None = None,
    match: str = "",
    content_types: dict[str, str] | None = None,
    debug: bool = False,
) -> bool:
    """Serve the one file ``filename`` (joined to ``root`` when relative).

    Only GET and HEAD are served, and only paths matching ``match`` (when
    given); ``content_types`` is as for :func:`staticdir`. Returns True when
    the file was served.
    """
    if not _wanted("TOOLS.STATICFILE", match, debug):
        return False
    if not os.path.isabs(filename):
        if not root:
            raise ValueError(
                f"tools.staticfile needs an absolute filename or a 'root', got {filename!r}."
            )
        filename = os.path.join(root, filename)
    return _attempt(filename, content_types, debug)
