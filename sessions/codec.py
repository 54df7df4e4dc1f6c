"""How session data becomes bytes in a store, and back.

A stored record is a JSON envelope ``{"created": <epoch>, "data": {key:
<encoded value>}}``. Each value is encoded on its own, so a session knows
exactly which keys a request changed (it compares encodings with what it
loaded) and an optimistic store can apply only those keys.

The default value encoding is JSON with tags for the common Python types
that JSON lacks; pickle is used only when asked for, and then every record
is signed with HMAC-SHA256 so a tampered store cannot run code in the app.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import hashlib
import hmac
import json
import pickle
import uuid
from typing import Any

# A tagged value is {TAG: name, "v": payload}; plain dicts that happen to use
# the TAG key are themselves tagged, so decoding is never ambiguous.
TAG = "__morello__"


class SessionDataError(TypeError):
    """A session value cannot be stored (the message names its key)."""


class TamperedRecord(ValueError):
    """A stored record's signature does not match: it is ignored."""


def _tagged(name: str, payload: Any) -> dict[str, Any]:
    return {TAG: name, "v": payload}


def to_json(value: Any) -> Any:
    """``value`` as plain JSON types, tagging what JSON cannot say itself."""
    # bool and int first: they are the common case and bool is an int.
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value) and TAG not in value:
            return {key: to_json(item) for key, item in value.items()}
        return _tagged("dict", [[to_json(k), to_json(v)] for k, v in value.items()])
    if isinstance(value, tuple):
        return _tagged("tuple", [to_json(item) for item in value])
    if isinstance(value, frozenset):
        return _tagged("frozenset", [to_json(item) for item in value])
    if isinstance(value, set):
        return _tagged("set", [to_json(item) for item in value])
    if isinstance(value, bytes):
        return _tagged("bytes", base64.b64encode(value).decode("ascii"))
    # datetime is a date: test it first.
    if isinstance(value, datetime.datetime):
        return _tagged("datetime", value.isoformat())
    if isinstance(value, datetime.date):
        return _tagged("date", value.isoformat())
    if isinstance(value, datetime.time):
        return _tagged("time", value.isoformat())
    if isinstance(value, datetime.timedelta):
        return _tagged("timedelta", [value.days, value.seconds, value.microseconds])
    if isinstance(value, decimal.Decimal):
        return _tagged("decimal", str(value))
    if isinstance(value, uuid.UUID):
        return _tagged("uuid", str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_DECODERS: dict[str, Any] = {
    "tuple": lambda v: tuple(from_json(item) for item in v),
    "set": lambda v: {from_json(item) for item in v},
    "frozenset": lambda v: frozenset(from_json(item) for item in v),
    "dict": lambda v: {from_json(k): from_json(item) for k, item in v},
    "bytes": lambda v: base64.b64decode(v),
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "timedelta": lambda v: datetime.timedelta(*v),
    "decimal": decimal.Decimal,
    "uuid": uuid.UUID,
}


def from_json(value: Any) -> Any:
    """The inverse of :func:`to_json`."""
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if isinstance(value, dict):
        if TAG in value:
            return _DECODERS[value[TAG]](value["v"])
        return {key: from_json(item) for key, item in value.items()}
    return value


class Codec:
    """Encode session values and records: tagged JSON, or signed pickle.

    ``serializer`` is ``'json'`` (default) or ``'pickle'``; pickle needs a
    ``secret`` (str or bytes). With a secret, JSON records are signed too.
    """

    def __init__(self, serializer: str = "json", secret: str | bytes | None = None) -> None:
        if serializer not in ("json", "pickle"):
            raise ValueError(f"session serializer must be 'json' or 'pickle', not {serializer!r}")
        if serializer == "pickle" and not secret:
            raise ValueError(
                "tools.sessions.serializer = 'pickle' needs tools.sessions.secret: "
                "unsigned pickles would let whoever can write the store run code"
            )
        self.serializer = serializer
        self.secret = secret.encode("utf-8") if isinstance(secret, str) else secret

    def encode_value(self, key: str, value: Any) -> str:
        """One value as text; :class:`SessionDataError` names ``key`` if it cannot be stored."""
        try:
            if self.serializer == "pickle":
                return base64.b64encode(pickle.dumps(value, pickle.HIGHEST_PROTOCOL)).decode()
            return json.dumps(to_json(value), separators=(",", ":"))
        except (TypeError, ValueError, AttributeError, pickle.PicklingError) as exc:
            raise SessionDataError(f"session[{key!r}] cannot be stored: {exc}") from exc

    def decode_value(self, text: str) -> Any:
        if self.serializer == "pickle":
            return pickle.loads(base64.b64decode(text))
        return from_json(json.loads(text))

    def encode_values(self, data: dict[str, Any]) -> dict[str, str]:
        """Every value of ``data`` encoded (keys must be strings)."""
        encoded = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise SessionDataError(f"session key {key!r} is not a string")
            encoded[key] = self.encode_value(key, value)
        return encoded

    def pack(self, created: float, values: dict[str, str]) -> bytes:
        """A whole record, signed when there is a secret."""
        body = json.dumps({"created": created, "data": values}, separators=(",", ":")).encode()
        if self.secret:
            return self._signature(body) + b"." + body
        return body

    def unpack(self, record: bytes) -> tuple[float, dict[str, str]]:
        """``(created, encoded values)`` of a record; :class:`TamperedRecord` if forged."""
        if self.secret:
            signature, _, body = record.partition(b".")
            if not hmac.compare_digest(signature, self._signature(body)):
                raise TamperedRecord("session record signature mismatch")
            record = body
        try:
            envelope = json.loads(record)
            return float(envelope["created"]), dict(envelope["data"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TamperedRecord(f"session record is not readable: {exc}") from exc

    def _signature(self, body: bytes) -> bytes:
        digest = hmac.new(self.secret or b"", body, hashlib.sha256).digest()
        return binascii.hexlify(digest)
