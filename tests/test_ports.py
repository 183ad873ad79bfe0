"""Free loopback ports are drawn below the kernel's ephemeral range, where no client socket can take them
between the choice and the server's bind."""

from __future__ import annotations

import socket

from deepfake_service import ports
from deepfake_service.ports import ephemeral_start, free_port


def test_ports_come_from_below_the_ephemeral_range_and_are_bindable():
    start = ephemeral_start()
    taken: set[int] = set()
    chosen = [free_port(taken) for _ in range(20)]
    assert len(set(chosen)) == 20 and set(chosen) == taken
    if start is not None and start - ports.LOWEST >= 1000:
        assert all(ports.LOWEST <= port < start for port in chosen)
    for port in chosen:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_chosen(monkeypatch, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        held = holder.getsockname()[1]
        holder.listen()
        # a one-port range below the ephemeral start holds only the held port: the kernel's choice instead
        monkeypatch.setattr(ports, "LOWEST", held)
        (tmp_path / "range").write_text(f"{held + 1000}\t60999\n")
        monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "range")
        monkeypatch.setattr(ports, "ATTEMPTS", 5)
        monkeypatch.setattr(ports.random.SystemRandom, "randrange", lambda self, low, high: held)
        assert free_port() != held


def test_an_unreadable_range_falls_back_to_the_kernels_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE", tmp_path / "missing")
    assert ephemeral_start(tmp_path / "missing") is None
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
