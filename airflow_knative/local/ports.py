"""Choosing local ports that stay free until the server that needs them binds them.

A port from ``bind(("127.0.0.1", 0))`` comes from the kernel's ephemeral range,
the same range every outgoing connection takes its local port from. Between
choosing such a port and a worker binding it (seconds: the worker imports Airflow
first) any connection the stack opens may take it, and the worker dies with
"address already in use". (Linux hands ``bind(0)`` odd ports and ``connect()``
even ones, so a block ``p, p+1`` chosen that way collides at ``p+1``.) Ports are
therefore chosen here, from bands below the ephemeral range, with a check that
nothing listens on them.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path

from airflow_knative.local.config import LOOPBACK

#: Linux's ephemeral range; its default is the fallback where the file does not exist.
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL_RANGE = range(32768, 61000)

#: Ports tests and benchmarks give the stacks they configure.
STACK_BAND = range(20000, 28000)
#: Ports the local activator gives the workers it starts (apart from the stacks' band,
#: because the activator runs in its own process and cannot see what was handed out there).
REVISION_BAND = range(28000, 32768)

_handed_out: set[int] = set()


class NoFreePorts(RuntimeError):
    """No block of free ports was found in a band."""


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> range:
    """The kernel's range for outgoing connections' local ports."""
    try:
        low, high = (int(field) for field in path.read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL_RANGE
    return range(low, high + 1)


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could bind ``host:port`` now (with SO_REUSEADDR, as uvicorn binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_ports(band: range, count: int = 1, avoid: Collection[int] = (), host: str = LOOPBACK) -> int:
    """The first of ``count`` consecutive ports in ``band``, outside the ephemeral range, free now.

    ``avoid`` holds ports already promised to a server that has not bound them yet.
    The block is chosen at random so that processes choosing at once rarely meet.
    """
    ephemeral = ephemeral_range()
    for _ in range(2000):
        first = random.randint(band.start, band.stop - count)
        block = range(first, first + count)
        if any(port in ephemeral or port in avoid for port in block):
            continue
        if all(port_is_free(port, host) for port in block):
            return first
    raise NoFreePorts(
        f"no {count} consecutive free port(s) in {band.start}-{band.stop - 1} outside the "
        f"ephemeral range {ephemeral.start}-{ephemeral.stop - 1} on {host}; free some, or "
        "narrow net.ipv4.ip_local_port_range"
    )


def reserve_ports(count: int = 1) -> int:
    """:func:`pick_free_ports` in :data:`STACK_BAND`, never handing a port out twice in this process."""
    first = pick_free_ports(STACK_BAND, count, avoid=_handed_out)
    _handed_out.update(range(first, first + count))
    return first
