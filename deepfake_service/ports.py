"""Free loopback ports for the servers the tests, benchmarks and local runs start.

A port the kernel hands out for ``bind(0)`` lies in its ephemeral range, the same range it draws from for
every outgoing connection; between choosing such a port and the server binding it, a client socket may
take it ("Address already in use", seen in the test suite while other servers were being called). So
ports are drawn at random below that range, where the kernel never assigns them by itself, each checked
by binding it once."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000  # above the registered well-known services most hosts run
ATTEMPTS = 200


def ephemeral_start(path: Path | None = None) -> int | None:
    """The first port of the kernel's ephemeral range (read from ``path``, default EPHEMERAL_RANGE), or None
    where it cannot be read."""
    try:
        return int((path or EPHEMERAL_RANGE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(taken: set[int] | None = None) -> int:
    """A loopback port nothing listens on, below the ephemeral range (and not in ``taken``, which gets it);
    the kernel's choice where that range is unknown or too low to leave room."""
    taken = set() if taken is None else taken
    start = ephemeral_start()
    if start is not None and start - LOWEST >= 1000:
        draw = random.SystemRandom()
        for _ in range(ATTEMPTS):
            port = draw.randrange(LOWEST, start)
            if port not in taken and _bindable(port):
                taken.add(port)
                return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    taken.add(port)
    return port
