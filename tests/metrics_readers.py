"""Read metrics the way a monitoring system does: a StatsD receiver and a Prometheus scrape.

:class:`StatsdListener` is a real UDP socket on 127.0.0.1 that keeps every
datagram: Airflow's statsd client sends plain ``name:value|type`` lines (several
per datagram when batched); tests point ``[metrics] statsd_host``/``statsd_port``
here (:func:`airflow_statsd_env`) and read back what the executor really sent.
:func:`scrape` reads a worker's or the gateway's ``GET /metrics``.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    """One StatsD line: ``name:value|kind``."""

    name: str
    value: float
    kind: str  # c (counter), g (gauge), ms (timer)


@dataclass
class StatsdListener:
    """Collects StatsD samples in a background thread until closed."""

    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="statsd-listener", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            parsed = [s for line in data.decode(errors="replace").splitlines() if (s := _parse(line))]
            with self._lock:
                self.samples.extend(parsed)

    def named(self, name: str) -> list[Sample]:
        """Every sample received so far with exactly this name."""
        with self._lock:
            return [s for s in self.samples if s.name == name]

    def total(self, name: str) -> float:
        """The sum of a counter's increments so far."""
        return sum(s.value for s in self.named(name))

    def wait_for(self, name: str, timeout: float = 30.0) -> list[Sample]:
        """The samples of ``name``, once at least one arrived (UDP: they come a moment after the event)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.named(name)
            if found:
                return found
            time.sleep(0.05)
        with self._lock:
            seen = sorted({s.name for s in self.samples})
        raise AssertionError(f"no StatsD sample {name!r} within {timeout}s; received: {seen}")

    def wait_for_total(self, name: str, expected: float, timeout: float = 30.0) -> None:
        """Wait until a counter's increments add up to ``expected`` (UDP samples arrive a moment late)."""
        deadline = time.monotonic() + timeout
        while self.total(name) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"StatsD {name!r} totals {self.total(name)}, expected {expected}")
            time.sleep(0.05)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self.sock.close()


def _parse(line: str) -> Sample | None:
    """``name:value|kind[|@rate]`` -> Sample; None for anything else."""
    try:
        name, rest = line.split(":", 1)
        value, kind = rest.split("|")[:2]
        return Sample(name, float(value), kind)
    except ValueError:
        return None


def airflow_statsd_env(port: int) -> dict[str, str]:
    """Airflow's ``[metrics]`` settings that send its StatsD metrics to ``port`` on 127.0.0.1."""
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }


#: The executor's metric names as Airflow's statsd client sends them (``statsd_prefix`` airflow).
EXECUTOR_PREFIX = "airflow.knative_executor."

#: A scrape: (sample name, labels) -> value.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> Samples:
    """``GET /metrics`` of a worker or the gateway, parsed with prometheus_client's own parser."""
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse_metrics(response.text)


def parse_metrics(text: str) -> Samples:
    """Prometheus text format, parsed with prometheus_client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample_value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when absent (a labelled counter appears at its first increment)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
