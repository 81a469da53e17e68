"""Caller credentials: HTTP Basic parsing and the cache of Airflow tokens they buy.

The gateway holds no credentials of its own: each caller's Basic user and
password are exchanged for an Airflow API token, which is cached for a short
time so that a burst of calls by one user pays the exchange once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

REALM = "airflow-knative"
WWW_AUTHENTICATE = f'Basic realm="{REALM}"'

#: A token is dropped this many seconds before Airflow says it expires, so that a
#: request sent with it cannot reach Airflow after the expiry.
EXPIRY_MARGIN = 30.0

#: Entries the token cache keeps at most; the oldest go first past it.
MAX_CACHED_TOKENS = 10_000

CacheKey = tuple[str, str]


class InvalidAuthorization(ValueError):
    """The ``Authorization`` header is missing or is not valid HTTP Basic."""


@dataclass(frozen=True)
class BasicCredentials:
    """A caller's Airflow user name and password, from its ``Authorization`` header."""

    username: str
    password: str = field(repr=False)
    #: The caller's address, for the login failure limits (not part of the cache key).
    client: str = field(default="", compare=False)

    @property
    def cache_key(self) -> CacheKey:
        """Key of this caller's token: the password is hashed so the cache never holds it."""
        return self.username, hashlib.sha256(self.password.encode("utf-8")).hexdigest()


def parse_basic_authorization(header: str | None) -> BasicCredentials:
    """Return the credentials in an ``Authorization: Basic ...`` header (RFC 7617).

    Raises :class:`InvalidAuthorization` with a message fit for the caller.
    """
    if not header:
        raise InvalidAuthorization(
            "missing Authorization header: send your Airflow user with HTTP Basic auth"
        )
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise InvalidAuthorization(f"unsupported Authorization scheme {scheme!r}: use HTTP Basic auth")
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidAuthorization("Authorization header is not valid base64") from exc
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = raw.decode("latin-1")
    username, colon, password = decoded.partition(":")
    if not colon or not username:
        raise InvalidAuthorization("Authorization header must hold 'user:password' with a non-empty user")
    return BasicCredentials(username=username, password=password)


def jwt_expiry(token: str) -> float | None:
    """Return the ``exp`` claim (Unix seconds) of a JWT, or ``None`` if it cannot be read.

    The signature is not checked: Airflow checks it; the gateway only wants to
    avoid reusing a token past its end.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def token_lifetime(token: str, ttl: float, now: float) -> float:
    """Seconds to cache ``token``: ``ttl``, shortened if the token expires sooner.

    ``now`` is the wall-clock time (Unix seconds) the token's ``exp`` is compared to.
    """
    expiry = jwt_expiry(token)
    if expiry is None:
        return ttl
    return max(0.0, min(ttl, expiry - now - EXPIRY_MARGIN))


class TokenCache:
    """Airflow tokens by (user, password hash), each valid for a limited time.

    Not thread-safe: it lives on the event loop, where no two coroutines run at once.
    """

    def __init__(
        self,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_entries: int = MAX_CACHED_TOKENS,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._wall_clock = wall_clock
        self._max_entries = max_entries
        self._entries: dict[CacheKey, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> str | None:
        """Return the cached token for ``key`` if it is still fresh."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        token, expires_at = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            return None
        return token

    def put(self, key: CacheKey, token: str) -> None:
        """Remember ``token`` for ``key`` for the TTL, or less if the token expires sooner."""
        lifetime = token_lifetime(token, self._ttl, self._wall_clock())
        if lifetime <= 0:
            return
        self._entries.pop(key, None)
        if len(self._entries) >= self._max_entries:
            self._evict()
        self._entries[key] = (token, self._clock() + lifetime)

    def drop(self, key: CacheKey, token: str) -> None:
        """Forget ``token`` (Airflow refused it), unless ``key`` already has a newer one."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] == token:
            del self._entries[key]

    def _evict(self) -> None:
        """Drop expired entries, then the oldest ones, to make room for one more."""
        now = self._clock()
        for key in [key for key, (_, expires_at) in self._entries.items() if expires_at <= now]:
            del self._entries[key]
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
