"""Keep failed logins cheap: a wrong password must not cost Airflow a password check each time.

Every call with credentials the gateway holds no token for is a ``POST /auth/token``,
which makes Airflow hash the password (deliberately slow) and takes one of the
gateway's few Airflow connections. A client guessing passwords would, unchecked,
load the API server and starve valid callers. So:

* **Negative cache**: a (user, password hash) Airflow rejected is rejected again
  here for ``rejected_ttl`` seconds without asking Airflow.
* **Failure limits**: past ``max_failures_per_client`` failed logins from one client
  address, or ``max_failures_per_user`` for one user name from anywhere, within
  ``window`` seconds, new logins are answered 429 with ``Retry-After`` (callers
  whose token is cached are not affected: they do not log in).
* **Login slots** (in :class:`~airflow_knative.gateway.airflow_api.AirflowApi`): at
  most half the Airflow connections carry logins at once, so the other half always
  serve callers that are already logged in.

Not thread-safe: it lives on the event loop, where no two coroutines run at once.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_knative.gateway import metrics
from airflow_knative.gateway.auth import BasicCredentials, CacheKey

#: Entries each table keeps at most; the least recently touched go first past it.
MAX_TRACKED = 10_000


@dataclass(frozen=True)
class Verdict:
    """What to do with a login before asking Airflow: go ahead, reject, or throttle."""

    rejected: bool = False
    retry_after: float | None = None

    @property
    def allowed(self) -> bool:
        """Ask Airflow."""
        return not self.rejected and self.retry_after is None


GO = Verdict()


@dataclass
class LoginGuard:
    """Negative cache and failure limits for the gateway's logins."""

    window: float = 60.0
    max_failures_per_client: int = 10
    max_failures_per_user: int = 50
    rejected_ttl: float = 60.0
    clock: Callable[[], float] = time.monotonic
    max_tracked: int = MAX_TRACKED
    _rejected: OrderedDict[CacheKey, float] = field(default_factory=OrderedDict, init=False)
    _by_client: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict, init=False)
    _by_user: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict, init=False)

    def check(self, credentials: BasicCredentials, client: str) -> Verdict:
        """Decide before a login whether Airflow should be asked at all."""
        now = self.clock()
        expires = self._rejected.get(credentials.cache_key)
        if expires is not None:
            if now < expires:
                metrics.LOGIN_FAILURES.labels("cached").inc()
                return Verdict(rejected=True)
            del self._rejected[credentials.cache_key]
        waits = [
            self._wait(self._by_client, client, self.max_failures_per_client, now),
            self._wait(self._by_user, credentials.username, self.max_failures_per_user, now),
        ]
        longest = max(waits)
        if longest <= 0:
            return GO
        metrics.LOGINS_RATE_LIMITED.inc()
        return Verdict(retry_after=float(math.ceil(longest)))

    def failed(self, credentials: BasicCredentials, client: str) -> None:
        """Airflow rejected these credentials: remember them and count the failure."""
        metrics.LOGIN_FAILURES.labels("airflow").inc()
        now = self.clock()
        self._remember(self._rejected, credentials.cache_key, now + self.rejected_ttl)
        for table, name in ((self._by_client, client), (self._by_user, credentials.username)):
            failures = table.get(name) or deque()
            failures.append(now)
            self._remember(table, name, failures)

    def succeeded(self, credentials: BasicCredentials) -> None:
        """Airflow accepted these credentials (e.g. the password was just set): forget a rejection."""
        self._rejected.pop(credentials.cache_key, None)

    def _wait(self, table: OrderedDict[str, deque[float]], name: str, limit: int, now: float) -> float:
        """Seconds until ``name`` is under ``limit`` failures in the window again (0: it is)."""
        failures = table.get(name)
        if not failures:
            return 0.0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del table[name]
            return 0.0
        if len(failures) < limit:
            return 0.0
        return failures[len(failures) - limit] + self.window - now

    def _remember(self, table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > self.max_tracked:
            table.popitem(last=False)
