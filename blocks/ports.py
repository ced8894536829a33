"""Ports for instances on this host: none shared by two live or starting instances, and each
confirmed to be answered by the instance that was started on it.

The kernel's "free right now" is not enough: an instance binds its port some time after it is
chosen, and another start in between (a second instance of the same launch, another delivery, a
rollback) was told the same port. So a port is *leased* before it is handed out: a ``flock`` on
``<ports dir>/<port>.lock``, one folder for the whole host (``$DELIVERY_PORTS_DIR``, default
``<temp>/prefect-delivery-ports-<uid>``) so that every state folder and every worker on the host
shares it. A lease is held from the choice until the launch confirms the instance answers on
the port (then the bound socket itself keeps the port taken), and the kernel drops it if the
process that holds it dies. Ports come from a range below Linux's ephemeral ports (32768 and
up), so no outgoing connection of the host takes one in between.

Confirmation (:func:`listener_pids`): the listening socket on the port belongs to a process of
the instance (its session, for a process; its PID namespace, for a container); when it does
not, the error names what holds the port.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from prefect_delivery.blocks.errors import InfrastructureError

#: Instances' ports: below the kernel's ephemeral range (net.ipv4.ip_local_port_range).
DEFAULT_RANGE = (20000, 29999)


def ports_dir() -> Path:
    folder = os.environ.get("DELIVERY_PORTS_DIR") or str(
        Path(tempfile.gettempdir()) / f"prefect-delivery-ports-{os.getuid()}"
    )
    path = Path(folder)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@dataclass
class PortLease:
    port: int
    handle: object  # the open lock file; closing it ends the lease

    def release(self) -> None:
        try:
            self.handle.close()  # type: ignore[attr-defined]
        except OSError:
            pass


#: Leases this process holds until their instance is confirmed: instance id -> lease.
_HELD: dict[str, PortLease] = {}
_HELD_LOCK = threading.Lock()


def bindable(host: str, port: int) -> bool:
    """Can a server bind ``host:port`` now (as servers do, with SO_REUSEADDR)?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def lease_port(host: str, owner: str, port_range: tuple[int, int] = DEFAULT_RANGE) -> PortLease:
    """Lease a port on this host for the instance ``owner`` until :func:`end_lease` (or this
    process's end): no other lease holder gets it, and the kernel says it is free."""
    low, high = port_range
    folder = ports_dir()
    span = high - low + 1
    start = random.randrange(span)
    for offset in range(span):
        port = low + (start + offset) % span
        handle = open(folder / f"{port}.lock", "a+")  # noqa: SIM115 - the lease itself
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        if not bindable(host, port):
            handle.close()
            continue
        lease = PortLease(port, handle)
        with _HELD_LOCK:
            _HELD[owner] = lease
        return lease
    raise InfrastructureError(
        f"no free port for an instance on {host} in {low}-{high}: every one is leased or bound"
    )


def end_lease(owner: str) -> None:
    """End the lease of instance ``owner`` (confirmed, stopped or never started)."""
    with _HELD_LOCK:
        lease = _HELD.pop(owner, None)
    if lease is not None:
        lease.release()


# ---------------------------------------------------------------------------- who listens
def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listener_pids(port: int) -> set[int]:
    """The processes holding a listening TCP socket on ``port`` (this network namespace)."""
    inodes = {f"socket:[{i}]" for i in _listening_inodes(port)}
    if not inodes:
        return set()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                try:
                    if os.readlink(fd) in inodes:
                        pids.add(int(entry.name))
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return pids


def session_of(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[3])  # session id
    except (OSError, IndexError, ValueError):
        return None


def pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def describe_pids(pids: set[int]) -> str:
    """What holds a port, for an error message: pid and command line of each."""
    if not pids:
        return "nothing listens on it"
    described = []
    for pid in sorted(pids)[:3]:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            command = " ".join(a.decode(errors="replace") for a in argv if a)[:120]
        except OSError:
            command = "?"
        described.append(f"pid {pid} ({command})")
    return "held by " + ", ".join(described)
