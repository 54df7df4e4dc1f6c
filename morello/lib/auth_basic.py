"""HTTP Basic authentication (RFC 7617): the ``tools.auth_basic`` tool.

Switch it on for a path with a realm and a password checker::

    config = {"/admin": {
        "tools.auth_basic.on": True,
        "tools.auth_basic.realm": "admin area",
        "tools.auth_basic.checkpassword": checkpassword_dict({"jon": "secret"}),
    }}

Requests without valid credentials get a 401 with a ``WWW-Authenticate``
challenge; a Basic ``Authorization`` header that cannot be decoded is a 400.
On success the user name is in ``request.login``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import unicodedata
from collections.abc import Callable

from morello.errors import HTTPError
from morello.serving import serving

__all__ = ["basic_auth", "checkpassword_dict"]

#: The charset RFC 7617 assumes when the challenge names none.
FALLBACK_CHARSET = "ISO-8859-1"
#: The message of every 401 these tools send (CherryPy's, so pages match).
UNAUTHORIZED = "You are not authorized to access that resource"

CheckPassword = Callable[[str, str, str], bool]


def checkpassword_dict(user_password_dict: dict[str, str]) -> CheckPassword:
    """A ``checkpassword`` for :func:`basic_auth` backed by ``{user: password}``.

    Passwords are compared in constant time. Users with an empty password
    cannot log in.
    """

    def checkpassword(realm: str, user: str, password: str) -> bool:
        expected = user_password_dict.get(user)
        # Compare even for unknown users, so timing does not tell them apart.
        matches = same_text(expected or "", password)
        return bool(expected) and matches

    return checkpassword


def basic_auth(
    realm: str,
    checkpassword: CheckPassword,
    debug: bool = False,
    accept_charset: str = "utf-8",
) -> None:
    """Require HTTP Basic credentials that ``checkpassword`` accepts.

    ``checkpassword(realm, username, password)`` returns True for valid
    credentials. The credentials are decoded as ``accept_charset`` (with
    ISO-8859-1 as fallback) and NFC-normalized; the challenge announces the
    charset unless it is ISO-8859-1.
    """
    check_realm(realm)
    request = serving.request
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, credentials = header.partition(" ")
        # Only a Basic header is ours to judge; any other scheme just gets
        # the challenge.
        if scheme.lower() == "basic":
            username, password = _decode_credentials(credentials, accept_charset)
            if checkpassword(realm, username, password):
                if debug:
                    _log("Auth succeeded")
                request.login = username
                return
    if debug:
        _log("Auth failed")
    serving.response.headers["WWW-Authenticate"] = (
        f'Basic realm="{realm}"{charset_param(accept_charset)}'
    )
    raise HTTPError(401, UNAUTHORIZED)


def _decode_credentials(credentials: str, charset: str) -> tuple[str, str]:
    """``'am9uOnNlY3JldA=='`` -> ``('jon', 'secret')``; 400 when malformed."""
    try:
        # Lenient base64 (non-alphabet characters are skipped), as CherryPy.
        raw = base64.b64decode(credentials.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error):
        raise HTTPError(400, "Bad Request") from None
    text = unicodedata.normalize("NFC", decode_text(raw, charset))
    username, colon, password = text.partition(":")
    if not colon:
        raise HTTPError(400, "Bad Request")
    return username, password


def check_realm(realm: str) -> None:
    """Refuse a realm that cannot be written inside a challenge's quotes."""
    if '"' in realm:
        raise ValueError('Realm cannot contain the " (quote) character.')


def charset_param(charset: str) -> str:
    """The challenge's ``, charset="..."`` parameter (none for ISO-8859-1)."""
    charset = charset.upper()
    return "" if charset == FALLBACK_CHARSET else f', charset="{charset}"'


def decode_text(raw: bytes, charset: str) -> str:
    """``raw`` decoded as ``charset``, or as ISO-8859-1 when it does not decode."""
    try:
        return raw.decode(charset)
    except UnicodeDecodeError:
        return raw.decode(FALLBACK_CHARSET)


def same_text(expected: str, given: str) -> bool:
    """Constant-time string equality (``hmac.compare_digest`` wants ASCII or bytes)."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def _log(message: str) -> None:
    from morello import log

    log(message, "TOOLS.AUTH_BASIC")
