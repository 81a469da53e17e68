"""Ports for local servers come from outside the kernel's ephemeral range (CI lost a stack to one).

A worker given ``bind(0)``'s port ``p`` and ``p+1`` for its neighbour died with "address
already in use": an outgoing connection of the stack had taken ``p+1`` in the seconds
before the worker bound it. These tests use real sockets on 127.0.0.1.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_knative.local import ports
from airflow_knative.local.ports import (
    REVISION_BAND,
    STACK_BAND,
    NoFreePorts,
    ephemeral_range,
    pick_free_ports,
    port_is_free,
    reserve_ports,
)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket listening on a port of the stacks' band."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", pick_free_ports(STACK_BAND)))
        sock.listen()
        yield sock


def test_ports_are_never_in_the_ephemeral_range() -> None:
    ephemeral = ephemeral_range()
    for _ in range(200):
        first = reserve_ports(3)
        assert not {first, first + 1, first + 2} & set(ephemeral)
        assert all(port in STACK_BAND for port in (first, first + 2))


def test_reserved_ports_are_not_handed_out_twice() -> None:
    seen: list[int] = []
    for _ in range(300):
        first = reserve_ports(2)
        seen += [first, first + 1]
    assert len(seen) == len(set(seen))


def test_a_port_something_listens_on_is_skipped(listener: socket.socket) -> None:
    busy = listener.getsockname()[1]
    assert not port_is_free(busy)
    band = range(busy - 1, busy + 2)  # busy-1, busy, busy+1: only a block not touching busy fits
    for _ in range(50):
        assert pick_free_ports(band) != busy


def test_promised_ports_are_avoided() -> None:
    band = range(REVISION_BAND.start, REVISION_BAND.start + 3)
    promised = {REVISION_BAND.start, REVISION_BAND.start + 2}
    for _ in range(50):
        assert pick_free_ports(band, avoid=promised) == REVISION_BAND.start + 1


def test_no_room_names_the_band_and_the_way_out(listener: socket.socket) -> None:
    busy = listener.getsockname()[1]
    with pytest.raises(NoFreePorts, match=rf"{busy}-{busy}.*ip_local_port_range"):
        pick_free_ports(range(busy, busy + 1))


def test_the_ephemeral_range_is_read_from_the_kernel_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("20000\t20010\n")
    assert ephemeral_range(setting) == range(20000, 20011)
    assert ephemeral_range(tmp_path / "missing") == ports.DEFAULT_EPHEMERAL_RANGE
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", setting)
    monkeypatch.setattr(ports.ephemeral_range, "__defaults__", (setting,))
    with pytest.raises(NoFreePorts):
        pick_free_ports(range(20000, 20011))
