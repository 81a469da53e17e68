"""Basic-auth parsing, JWT expiry reading and the token cache."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from airflow_knative.gateway.auth import (
    EXPIRY_MARGIN,
    BasicCredentials,
    InvalidAuthorization,
    TokenCache,
    jwt_expiry,
    parse_basic_authorization,
    token_lifetime,
)


def basic(raw: bytes | str) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return "Basic " + base64.b64encode(data).decode()


def jwt(claims: dict[str, object]) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS512', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- Basic header


def test_parses_user_and_password() -> None:
    assert parse_basic_authorization(basic("admin:secret")) == BasicCredentials("admin", "secret")


def test_password_may_hold_colons_and_the_scheme_any_case() -> None:
    creds = parse_basic_authorization("bAsIc " + basic("admin:a:b:c").split(" ", 1)[1])
    assert (creds.username, creds.password) == ("admin", "a:b:c")


def test_utf8_credentials() -> None:
    creds = parse_basic_authorization(basic("jürgen:pässwörd"))
    assert (creds.username, creds.password) == ("jürgen", "pässwörd")


def test_latin1_credentials_are_accepted_too() -> None:
    creds = parse_basic_authorization(basic("j\xfcrgen:x".encode("latin-1")))
    assert creds.username == "jürgen"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing Authorization"),
        ("", "missing Authorization"),
        ("Bearer abc", "unsupported Authorization scheme"),
        ("Basic !!!not-base64", "not valid base64"),
        (basic("no-colon"), "user:password"),
        (basic(":password-only"), "non-empty user"),
    ],
)
def test_invalid_headers_are_rejected_with_a_reason(header: str | None, message: str) -> None:
    with pytest.raises(InvalidAuthorization, match=message):
        parse_basic_authorization(header)


def test_cache_key_holds_a_hash_not_the_password() -> None:
    creds = BasicCredentials("admin", "secret")
    assert creds.cache_key == ("admin", hashlib.sha256(b"secret").hexdigest())
    assert "secret" not in repr(creds)


# --------------------------------------------------------------------------- JWT expiry


def test_reads_exp_claim() -> None:
    assert jwt_expiry(jwt({"sub": "admin", "exp": 1234})) == 1234.0


@pytest.mark.parametrize("token", ["opaque-token", "a.b.c", jwt({"sub": "admin"}), jwt({"exp": "soon"})])
def test_unreadable_expiry_is_none(token: str) -> None:
    assert jwt_expiry(token) is None


def test_lifetime_is_the_ttl_when_the_token_lives_longer() -> None:
    assert token_lifetime(jwt({"exp": 10_000}), ttl=300, now=1000) == 300


def test_lifetime_ends_before_the_token_expires() -> None:
    assert token_lifetime(jwt({"exp": 1100}), ttl=300, now=1000) == 100 - EXPIRY_MARGIN


def test_lifetime_of_an_expired_token_is_zero() -> None:
    assert token_lifetime(jwt({"exp": 900}), ttl=300, now=1000) == 0


def test_lifetime_of_an_opaque_token_is_the_ttl() -> None:
    assert token_lifetime("opaque", ttl=300, now=1000) == 300


# --------------------------------------------------------------------------- token cache


def test_cached_token_is_reused_until_the_ttl_passes() -> None:
    clock = FakeClock()
    cache = TokenCache(300, clock=clock, wall_clock=clock)
    key = BasicCredentials("admin", "pw").cache_key
    cache.put(key, "tok")
    clock.now += 299
    assert cache.get(key) == "tok"
    clock.now += 1
    assert cache.get(key) is None
    assert len(cache) == 0


def test_different_passwords_get_different_entries() -> None:
    cache = TokenCache(300)
    cache.put(BasicCredentials("admin", "right").cache_key, "tok")
    assert cache.get(BasicCredentials("admin", "wrong").cache_key) is None


def test_zero_ttl_caches_nothing() -> None:
    cache = TokenCache(0)
    cache.put(("admin", "h"), "tok")
    assert cache.get(("admin", "h")) is None


def test_token_expiring_soon_is_not_cached() -> None:
    clock = FakeClock(1000)
    cache = TokenCache(300, clock=clock, wall_clock=clock)
    cache.put(("admin", "h"), jwt({"exp": 1000 + EXPIRY_MARGIN - 1}))
    assert cache.get(("admin", "h")) is None


def test_drop_forgets_only_the_refused_token() -> None:
    cache = TokenCache(300)
    cache.put(("admin", "h"), "new")
    cache.drop(("admin", "h"), "old")  # a concurrent request already replaced it
    assert cache.get(("admin", "h")) == "new"
    cache.drop(("admin", "h"), "new")
    assert cache.get(("admin", "h")) is None


def test_full_cache_evicts_expired_then_oldest() -> None:
    clock = FakeClock()
    cache = TokenCache(10, clock=clock, wall_clock=clock, max_entries=2)
    cache.put(("a", "h"), "ta")
    clock.now += 5
    cache.put(("b", "h"), "tb")
    cache.put(("c", "h"), "tc")  # full: "a" is the oldest
    assert cache.get(("a", "h")) is None
    assert cache.get(("b", "h")) == "tb"
    assert cache.get(("c", "h")) == "tc"
    clock.now += 6  # "b" expired
    cache.put(("d", "h"), "td")
    assert (cache.get(("c", "h")), cache.get(("d", "h"))) == ("tc", "td")
