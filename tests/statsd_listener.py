"""A real StatsD receiver for tests: a UDP socket on 127.0.0.1 that keeps every datagram.

Airflow's statsd client sends plain ``name:value|type`` lines (several per
datagram when batched); tests point ``[metrics] statsd_host``/``statsd_port`` here
and read back what the executor really sent.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


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
