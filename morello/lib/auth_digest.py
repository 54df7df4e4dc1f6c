"""HTTP Digest authentication (RFC 7616): the ``tools.auth_digest`` tool.

Switch it on for a path with a realm, a secret key for nonces and a way to
find a user's HA1 (the hash of ``user:realm:password``)::

    config = {"/admin": {
        "tools.auth_digest.on": True,
        "tools.auth_digest.realm": "admin area",
        "tools.auth_digest.get_ha1": get_ha1_dict_plain({"jon": "secret"}),
        "tools.auth_digest.key": "a long random secret",
    }}

The challenge offers ``qop="auth"`` with MD5 (or SHA-256, with
``tools.auth_digest.algorithm``). Nonces carry their creation time and an
HMAC of it keyed with ``key``: forged nonces are refused, and after ten
minutes a nonce is stale (the client is asked to retry with a new one). A
response digest that was already accepted is refused as a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NoReturn

from morello.errors import HTTPError
from morello.lib.auth_basic import UNAUTHORIZED, charset_param, check_realm, decode_text, same_text
from morello.serving import serving

__all__ = [
    "H",
    "HttpDigestAuthorization",
    "digest_auth",
    "get_ha1_dict",
    "get_ha1_dict_plain",
    "get_ha1_file_htdigest",
    "synthesize_nonce",
    "www_authenticate",
]

#: Hash functions by RFC 7616 algorithm name.
ALGORITHMS: dict[str, Callable[..., Any]] = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
#: The only quality of protection offered: the digest covers method and URI.
QOP_AUTH = "auth"
#: Seconds a nonce stays fresh (CherryPy's choice).
NONCE_LIFETIME = 600
DEFAULT_CHARSET = "UTF-8"
PARSE_ERROR = "The Authorization header could not be parsed."

GetHA1 = Callable[[str, str], str | None]


def _algorithm(name: str) -> str:
    """The canonical spelling of a supported algorithm name; ValueError otherwise."""
    canonical = name.upper()
    if canonical not in ALGORITHMS:
        raise ValueError(f"Unsupported value for algorithm: {name!r}")
    return canonical


def H(s: str, algorithm: str = "MD5") -> str:  # noqa: N802 - the RFC's (and CherryPy's) name
    """The hex digest of ``s`` (UTF-8) with the named algorithm."""
    return ALGORITHMS[_algorithm(algorithm)](s.encode("utf-8")).hexdigest()


# -- credential stores ---------------------------------------------------


def get_ha1_dict_plain(user_password_dict: dict[str, str], algorithm: str = "MD5") -> GetHA1:
    """A ``get_ha1`` backed by ``{user: plaintext password}``.

    ``algorithm`` must match the tool's. Users with an empty password
    cannot log in.
    """
    algorithm = _algorithm(algorithm)

    def get_ha1(realm: str, username: str) -> str | None:
        password = user_password_dict.get(username)
        return H(f"{username}:{realm}:{password}", algorithm) if password else None

    return get_ha1


def get_ha1_dict(user_ha1_dict: dict[str, str]) -> GetHA1:
    """A ``get_ha1`` backed by ``{user: HA1}`` (precomputed hashes)."""

    def get_ha1(realm: str, username: str) -> str | None:
        return user_ha1_dict.get(username)

    return get_ha1


def get_ha1_file_htdigest(filename: str) -> GetHA1:
    """A ``get_ha1`` reading an Apache ``htdigest`` file (``user:realm:HA1`` lines).

    The file is read on every lookup, so edits apply at once; lines that do
    not have three fields are skipped.
    """

    def get_ha1(realm: str, username: str) -> str | None:
        with open(filename, encoding="utf-8") as lines:
            for line in lines:
                fields = line.rstrip("\r\n").split(":")
                if len(fields) == 3 and fields[0] == username and fields[1] == realm:
                    return fields[2]
        return None

    return get_ha1


# -- nonces ----------------------------------------------------------------


def synthesize_nonce(s: str, key: str | bytes, timestamp: Any = None) -> str:
    """A nonce ``'<timestamp>:<HMAC-SHA256 of timestamp and s>'``.

    ``s`` ties the nonce to something (the tool uses the realm); ``key`` is
    the server's secret; ``timestamp`` defaults to now (whole seconds).
    Only someone holding ``key`` can make a nonce that validates.
    """
    if timestamp is None:
        timestamp = int(time.time())
    secret = key.encode("utf-8") if isinstance(key, str) else key
    mac = hmac.new(secret, f"{timestamp}:{s}".encode(), hashlib.sha256).hexdigest()
    return f"{timestamp}:{mac}"


class _AcceptedResponses:
    """Response digests accepted recently, to refuse replays of them.

    A digest covers nonce, nonce count, client nonce, method and URI, so a
    repeat means the same request was sent again. Entries older than
    :data:`NONCE_LIFETIME` are dropped (their nonces are stale by then); past
    ``limit`` entries the oldest go first. Per process: with several worker
    processes a replay is only caught by the worker that saw the original.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, digest: str) -> bool:
        """Record ``digest``; False if it was already recorded."""
        now = time.monotonic()
        with self._lock:
            seen = self._seen
            # Insertion order is time order: expired entries are at the front.
            while seen and now - next(iter(seen.values())) >= NONCE_LIFETIME:
                seen.popitem(last=False)
            if digest in seen:
                return False
            if len(seen) >= self.limit:
                seen.popitem(last=False)
            seen[digest] = now
            return True


_accepted = _AcceptedResponses()


# -- the Authorization header ------------------------------------------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# One auth-param: name = token or quoted-string, then a comma or the end.
_PARAM = re.compile(rf'({_TOKEN})[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s",]+)[ \t]*(?:,|$)')
_ESCAPED = re.compile(r"\\(.)")


def _parse_params(text: str) -> dict[str, str]:
    """``'a=1, b="x y"'`` -> ``{'a': '1', 'b': 'x y'}``; ValueError when malformed.

    Names are case-insensitive (lowercased here) and may appear only once.
    """
    params: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        if text[pos] in ", \t":  # empty list elements are allowed
            pos += 1
            continue
        match = _PARAM.match(text, pos)
        if match is None:
            raise ValueError(f"Malformed parameter at {text[pos : pos + 20]!r}")
        name, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = _ESCAPED.sub(r"\1", value[1:-1])
        if name in params:
            raise ValueError(f"Repeated parameter {name!r}")
        params[name] = value
        pos = match.end()
    return params


def _decode(value: str, charset: str) -> str:
    """A header's latin-1 text re-decoded as ``charset`` (latin-1 if that fails)."""
    return decode_text(value.encode("latin-1"), charset)


class HttpDigestAuthorization:
    """A parsed Digest ``Authorization`` header, and the digest it should carry.

    Raises ValueError when the header is not a well-formed Digest header
    for ``algorithm`` with ``qop=auth`` (or no qop, as in RFC 2069). Values
    are decoded as ``accept_charset`` (ISO-8859-1 as fallback).
    """

    scheme = "digest"

    def __init__(
        self,
        auth_header: str,
        http_method: str,
        debug: bool = False,
        accept_charset: str = DEFAULT_CHARSET,
        algorithm: str = "MD5",
    ) -> None:
        if not self.matches(auth_header):
            raise ValueError('Authorization scheme is not "Digest"')
        self.auth_header = auth_header
        self.http_method = http_method
        self.debug = debug
        params = _parse_params(auth_header.partition(" ")[2])
        if not params:
            raise ValueError("Digest Authorization header has no parameters")
        params = {name: _decode(value, accept_charset) for name, value in params.items()}
        self.username = params.get("username")
        self.realm = params.get("realm")
        self.nonce = params.get("nonce")
        self.uri = params.get("uri")
        self.response = params.get("response")
        self.opaque = params.get("opaque")
        self.qop = params.get("qop")
        self.nc = params.get("nc")
        self.cnonce = params.get("cnonce")
        self.algorithm = _algorithm(algorithm)
        if params.get("algorithm", algorithm).upper() != self.algorithm:
            raise ValueError(f"Unsupported algorithm {params['algorithm']!r}")
        if not (self.username and self.realm and self.nonce and self.uri and self.response):
            raise ValueError("Required parameters are missing")
        if self.qop is None:
            if self.cnonce or self.nc:
                raise ValueError("cnonce and nc are only allowed with qop")
        elif self.qop != QOP_AUTH:
            raise ValueError(f"Unsupported qop {self.qop!r}")
        elif not (self.cnonce and self.nc):
            raise ValueError("qop requires cnonce and nc")

    @classmethod
    def matches(cls, header: str) -> bool:
        """Whether ``header`` uses the Digest scheme."""
        return header.partition(" ")[0].lower() == cls.scheme

    def __str__(self) -> str:
        return f"authorization : {self.auth_header}"

    def validate_nonce(self, s: str, key: str | bytes) -> bool:
        """Whether the nonce was made by :func:`synthesize_nonce` with ``s`` and ``key``."""
        timestamp, colon, _ = self.nonce.partition(":")
        valid = bool(colon) and same_text(synthesize_nonce(s, key, timestamp), self.nonce)
        if self.debug:
            _log(f"validate_nonce: {valid}")
        return valid

    def is_nonce_stale(self, max_age_seconds: int = NONCE_LIFETIME) -> bool:
        """Whether the (validated) nonce is older than ``max_age_seconds``."""
        try:
            stale = int(self.nonce.partition(":")[0]) + max_age_seconds <= time.time()
        except ValueError:
            stale = True
        if stale and self.debug:
            _log("nonce is stale")
        return stale

    def HA2(self) -> str:  # noqa: N802 - the RFC's name
        """H(method:uri) (RFC 7616 section 3.4.3, qop=auth)."""
        return H(f"{self.http_method}:{self.uri}", self.algorithm)

    def request_digest(self, ha1: str) -> str:
        """The response digest a client knowing ``ha1`` sends (RFC 7616 3.4.1)."""
        if self.qop:
            data = f"{self.nonce}:{self.nc}:{self.cnonce}:{self.qop}:{self.HA2()}"
        else:
            data = f"{self.nonce}:{self.HA2()}"
        return H(f"{ha1}:{data}", self.algorithm)


# -- the tool ----------------------------------------------------------------


def www_authenticate(
    realm: str,
    key: str | bytes,
    algorithm: str = "MD5",
    nonce: str | None = None,
    qop: str = QOP_AUTH,
    stale: bool = False,
    accept_charset: str = DEFAULT_CHARSET,
) -> str:
    """The ``WWW-Authenticate`` value of a Digest challenge (a fresh nonce by default)."""
    if qop != QOP_AUTH:
        raise ValueError(f"Unsupported value for qop: {qop!r}")
    algorithm = _algorithm(algorithm)
    if nonce is None:
        nonce = synthesize_nonce(realm, key)
    stale_param = ', stale="true"' if stale else ""
    return (
        f'Digest realm="{realm}", nonce="{nonce}", algorithm="{algorithm}", '
        f'qop="{qop}"{stale_param}{charset_param(accept_charset)}'
    )


def digest_auth(
    realm: str,
    get_ha1: GetHA1,
    key: str | bytes,
    debug: bool = False,
    accept_charset: str = "utf-8",
    algorithm: str = "MD5",
) -> None:
    """Require a Digest ``Authorization`` header proving the user's password.

    ``get_ha1(realm, username)`` returns the user's HA1, hashed with
    ``algorithm`` (``'MD5'`` or ``'SHA-256'``), or None for unknown users.
    ``key`` is the secret nonces are signed with. Missing, wrong or forged
    credentials get a 401 challenge (with ``stale="true"`` for an expired
    nonce or a replayed request); a malformed header or a digest URI that
    is not the request's is a 400. On success the user name is in
    ``request.login``.
    """
    check_realm(realm)
    algorithm = _algorithm(algorithm)
    request = serving.request
    header = request.headers.get("Authorization")

    def refuse(stale: bool = False) -> NoReturn:
        challenge = www_authenticate(
            realm, key, algorithm, stale=stale, accept_charset=accept_charset
        )
        if debug:
            _log(challenge)
        serving.response.headers["WWW-Authenticate"] = challenge
        raise HTTPError(401, UNAUTHORIZED)

    if header is None or not HttpDigestAuthorization.matches(header):
        refuse()
    with HTTPError.handle(ValueError, 400, PARSE_ERROR):
        auth = HttpDigestAuthorization(header, request.method, debug, accept_charset, algorithm)
    if debug:
        _log(str(auth))
    if auth.realm != realm or not auth.validate_nonce(realm, key):
        refuse()
    ha1 = get_ha1(realm, auth.username)
    # Hash even for unknown users, so timing does not tell them apart.
    if not same_text(auth.request_digest(ha1 or ""), auth.response) or ha1 is None:
        refuse()
    # RFC 7616 3.4.6: the digest must be for this very request target (a
    # digest captured on its way to another URI proves nothing here).
    if _origin_form(auth.uri) != _origin_form(_request_target(request, accept_charset)):
        raise HTTPError(400, "The digest URI is not the URI of this request.")
    if auth.is_nonce_stale():
        refuse(stale=True)
    if not _accepted.first_use(auth.response):
        if debug:
            _log("replayed response")
        # Stale, not plain 401: an honest client that repeats a request
        # without qop retries with a new nonce instead of asking the user.
        refuse(stale=True)
    request.login = auth.username
    if debug:
        _log(f"authentication of {auth.username} successful")


def _request_target(request: Any, charset: str) -> str:
    """The request target as the client sent it (decoded like header values)."""
    environ = request.wsgi_environ
    target = environ.get("REQUEST_URI")
    if target is None:  # a WSGI server that does not pass it on: rebuild it
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        target = urllib.parse.quote(path, safe="/;=,~!$&'()*+@:", encoding="latin-1")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
    return _decode(target, charset)


def _origin_form(uri: str) -> str:
    """``'http://host/p?q'`` -> ``'/p?q'``; other forms are returned unchanged."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri
    if parts.scheme and parts.netloc:
        return urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return uri


def _log(message: str) -> None:
    from morello import log

    log(message, "TOOLS.AUTH_DIGEST")
