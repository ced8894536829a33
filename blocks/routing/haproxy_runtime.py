"""HAProxy's runtime API (the admin unix socket) and the configuration we hand it.

Kept apart from the Block so the wire format and the config text can be tested without Prefect.
A weight change is one socket round trip: HAProxy applies it without a reload, in milliseconds.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import time
from pathlib import Path

from prefect_delivery.blocks.errors import ConfigError, InfrastructureError
from prefect_delivery.blocks.paths import pid_alive
from prefect_delivery.blocks.routing import PLACEHOLDER_PORT, SlotState

#: The backend and frontend of a router made before services (one per environment); a
#: service's router names both after the service (:func:`proxy_names`).
BACKEND = "be_app"
FRONTEND = "fe_app"


def proxy_names(service: str | None) -> tuple[str, str]:
    """(frontend, backend) of a service's router: what HAProxy's stats, its logs and its
    Prometheus exporter call them (``fe_hello-service``, ``be_hello-service``)."""
    if service is None:
        return FRONTEND, BACKEND
    return f"fe_{service}", f"be_{service}"


#: PromQL for requests, 5xx errors and mean latency (ms) of some slots over a window, from the
#: metrics HAProxy's built-in Prometheus exporter publishes (``{servers}``: a regex of slots,
#: ``{backend}``: the service's backend).
EXPORTER_QUERIES = (
    'sum(increase(haproxy_server_http_responses_total{{proxy="{backend}",server=~"{servers}"}}'
    "[{window}s]))",
    'sum(increase(haproxy_server_http_responses_total{{proxy="{backend}",server=~"{servers}",'
    'code="5xx"}}[{window}s]))',
    'max(haproxy_server_response_time_average_seconds{{proxy="{backend}",server=~"{servers}"}})'
    " * 1000",
)
#: The response header naming the router slot that answered (see :func:`render_config`).
IDENTITY_HEADER = "X-Delivery-Slot"


def render_config(
    *,
    frontend_host: str,
    frontend_port: int,
    admin_socket: str,
    pidfile: str,
    server_slots: int,
    metrics_port: int | None = None,
    service: str | None = None,
) -> str:
    """The whole HAProxy config for one environment: a frontend and a backend of spare slots.

    Every slot starts in maintenance on a placeholder address; the router assigns an instance
    to a slot at run time (``set server ... addr``) and moves traffic by weight only.
    HAProxy's own check is a TCP connect: it takes an instance that died out of rotation within
    a second. Whether a release is healthy is judged by the pipeline (health path, smoke tests,
    analysis), so a release with another health path never needs a config change.
    ``retry-on conn-failure empty-response`` with ``redispatch`` sends a request that hit an
    instance which just went away to another one instead of failing it. Every response carries
    the slot that answered it (``IDENTITY_HEADER``: HAProxy's ``%s``, the server's name), so the
    pipeline knows which release answered without the application's help. A service's
    router names its frontend and backend after it (:func:`proxy_names`).
    """
    frontend, backend = proxy_names(service)
    servers = "\n".join(
        f"    server s{i} 127.0.0.1:{PLACEHOLDER_PORT} disabled" for i in range(server_slots)
    )
    metrics = ""
    if metrics_port:
        # HAProxy's built-in Prometheus exporter, for a Prometheus that scrapes this router.
        metrics = (
            f"\nfrontend fe_metrics\n    bind {frontend_host}:{metrics_port}\n"
            "    http-request use-service prometheus-exporter if { path /metrics }\n"
            "    http-request return status 404\n"
        )
    return f"""# Written by prefect-delivery; weights change through the admin socket, not here.
global
    pidfile {pidfile}
    stats socket {admin_socket} mode 600 level admin
    stats timeout 10s
    maxconn 4096

defaults
    mode http
    option httplog
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue 5s
    timeout http-keep-alive 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
    http-reuse safe

frontend {frontend}
    bind {frontend_host}:{frontend_port}
    default_backend {backend}

backend {backend}
    balance roundrobin
    http-response set-header {IDENTITY_HEADER} %s
    default-server inter 1s fastinter 250ms downinter 500ms fall 2 rise 1 check weight 0
{servers}
{metrics}"""


class RuntimeAPI:
    """A client for the admin socket; each call is one connection, commands joined by ';'."""

    def __init__(self, socket_path: str, timeout_s: float = 5.0):
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    def execute(self, *commands: str) -> str:
        if not commands:
            return ""
        payload = ("; ".join(commands) + "\n").encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(self.socket_path)
                sock.sendall(payload)
                chunks = []
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise InfrastructureError(
                f"HAProxy admin socket {self.socket_path} is not answering ({exc.strerror}); "
                "is HAProxy running for this environment?"
            ) from exc
        except OSError as exc:
            raise InfrastructureError(f"HAProxy admin socket {self.socket_path}: {exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    def checked(self, *commands: str) -> str:
        """Run commands and fail on any answer HAProxy gives as an error."""
        out = self.execute(*commands)
        for line in out.splitlines():
            low = line.strip().lower()
            if low.startswith(("unknown", "no such", "invalid", "require", "error")) or (
                "unknown command" in low
            ):
                raise InfrastructureError(f"HAProxy refused {commands!r}: {line.strip()}")
        return out

    def servers(self, backend: str = BACKEND) -> list[SlotState]:
        return parse_stat(self.execute("show stat"), backend)


def _int(value: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_stat(text: str, backend: str = BACKEND) -> list[SlotState]:
    """Parse ``show stat`` CSV into the backend's server entries (frontend/backend rows dropped)."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise InfrastructureError(f"unexpected answer to 'show stat': {text[:120]!r}")
    reader = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    result = []
    for row in reader:
        if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        weight = row.get("uweight") or row.get("weight")
        result.append(
            SlotState(
                name=row["svname"],
                address=row.get("addr") or "",
                status=row.get("status") or "",
                weight=_int(weight),
                current_sessions=_int(row.get("scur")),
                total_sessions=_int(row.get("stot")),
                responses_5xx=_int(row.get("hrsp_5xx")),
                responses_2xx=_int(row.get("hrsp_2xx")),
                responses_4xx=_int(row.get("hrsp_4xx")),
                responses_total=sum(
                    _int(row.get(f"hrsp_{c}")) for c in ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
                ),
                connection_errors=_int(row.get("econ")) + _int(row.get("eresp")),
                avg_response_ms=_int(row.get("rtime")),
                max_response_ms=_int(row.get("rtime_max")),
                check_status=row.get("check_status") or "",
            )
        )
    return result


class HAProxyControl:
    """The runtime side of one service's HAProxy in one environment: its admin socket and
    pidfile under ``workdir``, its backend. Pure client code (no Prefect): the HAProxyRouter
    Block hands it out (``control()``), and the commands that must answer at once (status,
    break-glass rollback) make it from the environment's snapshot."""

    def __init__(self, name: str, workdir: Path, backend: str = BACKEND):
        self.name = name
        self.workdir = Path(workdir)
        self.backend = backend

    @property
    def route_name(self) -> str:
        return self.backend

    @classmethod
    def of(cls, state_dir: str, environment: str, service: str | None) -> HAProxyControl:
        """The router of ``service`` in ``environment``: ``<state>/haproxy/<env>/<service>``
        (a router made before services: ``<state>/haproxy/<env>``, backend ``be_app``)."""
        workdir = Path(state_dir) / "haproxy" / environment
        if service is not None:
            workdir = workdir / service
        return cls(
            environment if service is None else f"{environment}/{service}",
            workdir,
            proxy_names(service)[1],
        )

    @property
    def socket_path(self) -> Path:
        return self.workdir / "admin.sock"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "haproxy.pid"

    def api(self) -> RuntimeAPI:
        return RuntimeAPI(str(self.socket_path))

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def stop(self) -> None:
        """Stop this HAProxy (SIGTERM, then SIGKILL) and forget its socket and pidfile."""
        pid = self.pid()
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        for path in (self.socket_path, self.pidfile):
            path.unlink(missing_ok=True)

    def is_running(self) -> bool:
        if self.pid() is None:
            return False
        try:
            self.api().execute("show info")
        except InfrastructureError:
            return False
        return True

    def slots(self) -> list[SlotState]:
        """Every backend slot with its address, status, weight and counters, read live."""
        return self.api().servers(self.backend)

    def weights(self) -> dict[str, int]:
        """Live weight per instance address ("host:port"), for slots that hold an instance."""
        return {s.address: s.weight for s in self.slots() if s.in_use}

    # ----------------------------------------------------------------- changing
    def _slot_of(self, address: str, slots: list[SlotState] | None = None) -> SlotState:
        for server in slots if slots is not None else self.slots():
            if server.in_use and server.address == address:
                return server
        raise InfrastructureError(f"no backend slot of '{self.name}' holds {address}")

    def attach(self, address: str) -> str:
        """Put an instance into a free slot with weight 0; returns the slot name."""
        servers = self.slots()
        for server in servers:
            if server.in_use and server.address == address:
                return server.name
        free = [s for s in servers if not s.in_use]
        if not free:
            raise ConfigError(
                f"router '{self.name}' server_slots",
                f"all {len(servers)} backend slots are taken.",
                "raise server_slots in the router block, or retire old instances "
                "(`delivery down` stops everything).",
            )
        host, port = address.rsplit(":", 1)
        slot = free[0].name
        self.api().checked(
            f"set server {self.backend}/{slot} addr {host} port {port}",
            f"set server {self.backend}/{slot} weight 0",
            f"set server {self.backend}/{slot} state ready",
        )
        return slot

    def wait_until_up(self, address: str, timeout_s: float = 15.0) -> None:
        """Wait until HAProxy's own health check sees the instance UP (so weight moves traffic)."""
        deadline = time.monotonic() + timeout_s
        status = "?"
        while time.monotonic() < deadline:
            status = self._slot_of(address).status
            if status.startswith("UP") or status == "no check":
                return
            time.sleep(0.05)
        raise InfrastructureError(
            f"HAProxy of '{self.name}' still reports {address} as {status} after {timeout_s:.0f}s"
        )

    def set_weights(self, weights: dict[str, int]) -> float:
        """Apply weights to instance addresses in one round trip; returns milliseconds taken.

        Raises come first and cuts last, so at no moment is every server at weight 0.
        """
        for address, weight in weights.items():
            if not 0 <= weight <= 256:
                raise ConfigError(
                    "weights", f"{address}: weight {weight} is outside 0..256.", "use 0..256."
                )
        servers = self.slots()
        current = {s.address: s for s in servers if s.in_use}
        slots = {address: self._slot_of(address, servers).name for address in weights}
        ordered = sorted(weights, key=lambda a: weights[a] <= current[a].weight)
        commands = [f"set server {self.backend}/{slots[a]} weight {weights[a]}" for a in ordered]
        started = time.perf_counter()
        self.api().checked(*commands)
        return (time.perf_counter() - started) * 1000

    def drain(self, address: str, timeout_s: float = 10.0) -> None:
        """Weight 0, then wait until the instance has no open sessions left."""
        slot = self._slot_of(address).name
        self.api().checked(f"set server {self.backend}/{slot} weight 0")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._slot_of(address).current_sessions == 0:
                return
            time.sleep(0.05)

    def detach(self, address: str) -> None:
        """Take the instance out of its slot (maintenance, placeholder address)."""
        try:
            slot = self._slot_of(address).name
        except InfrastructureError:
            return
        self.api().checked(
            f"set server {self.backend}/{slot} weight 0",
            f"set server {self.backend}/{slot} state maint",
            f"set server {self.backend}/{slot} addr 127.0.0.1 port {PLACEHOLDER_PORT}",
        )
