"""Ports that cannot collide (blocks/ports.py): a leased port is nobody else's, in this process
or another, until the lease ends; a bound one is never handed out; who listens is known."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest

from prefect_delivery.blocks.ports import (
    bindable,
    describe_pids,
    end_lease,
    lease_port,
    listener_pids,
)

RANGE = (23100, 23179)  # 80 ports: narrow, so that collisions would show


@pytest.fixture(autouse=True)
def _own_ports_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DELIVERY_PORTS_DIR", str(tmp_path / "ports"))


def test_leases_in_one_process_never_repeat_a_port_until_they_end():
    leases = [lease_port("127.0.0.1", f"i{n}", RANGE) for n in range(40)]
    ports = [lease.port for lease in leases]
    assert len(set(ports)) == 40
    for n in range(40):
        end_lease(f"i{n}")
    again = [lease_port("127.0.0.1", f"j{n}", RANGE).port for n in range(80)]
    assert len(set(again)) == 80  # every port came back once its lease ended
    for n in range(80):
        end_lease(f"j{n}")


def test_four_processes_leasing_at_once_get_distinct_ports(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from prefect_delivery.blocks.ports import lease_port
        held = [lease_port("127.0.0.1", f"p{{n}}", {RANGE}) for n in range(18)]
        print(" ".join(str(h.port) for h in held), flush=True)
        time.sleep(3)  # hold them while the others lease
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    ports = [int(x) for out in outputs for x in out.split()]
    assert len(ports) == 72 and len(set(ports)) == 72, sorted(ports)


def test_a_port_another_program_listens_on_is_never_leased():
    busy = []
    try:
        for port in range(RANGE[0], RANGE[0] + 60):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()
            busy.append(sock)
        got = {lease_port("127.0.0.1", f"k{n}", RANGE).port for n in range(20)}
        assert got.isdisjoint({s.getsockname()[1] for s in busy})
        with pytest.raises(Exception, match="no free port"):
            lease_port("127.0.0.1", "k-last", RANGE)
        assert not bindable("127.0.0.1", busy[0].getsockname()[1])
    finally:
        for sock in busy:
            sock.close()
        for n in range(20):
            end_lease(f"k{n}")


def test_who_listens_on_a_port_is_known_and_said():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        import os

        assert os.getpid() in listener_pids(port)
        assert f"pid {os.getpid()}" in describe_pids(listener_pids(port))
    assert listener_pids(port) == set()
    assert describe_pids(set()) == "nothing listens on it"
