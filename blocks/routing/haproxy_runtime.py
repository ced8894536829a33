"""HAProxy's runtime API (the admin unix socket) and the configuration we hand it.

Kept apart from the Block so the wire format and the config text can be tested without Prefect.
A weight change is one socket round trip: HAProxy applies it without a reload, in milliseconds.
"""

from __future__ import annotations

import csv
import io
import socket

from prefect_delivery.blocks.errors import InfrastructureError
from prefect_delivery.blocks.routing import PLACEHOLDER_PORT, SlotState

BACKEND = "be_app"

#: PromQL for requests, 5xx errors and mean latency (ms) of some slots over a window, from the
#: metrics HAProxy's built-in Prometheus exporter publishes (``{servers}``: a regex of slots).
EXPORTER_QUERIES = (
    'sum(increase(haproxy_server_http_responses_total{{proxy="be_app",server=~"{servers}"}}'
    "[{window}s]))",
    'sum(increase(haproxy_server_http_responses_total{{proxy="be_app",server=~"{servers}",'
    'code="5xx"}}[{window}s]))',
    'max(haproxy_server_response_time_average_seconds{{proxy="be_app",server=~"{servers}"}})'
    " * 1000",
)
FRONTEND = "fe_app"


def render_config(
    *,
    frontend_host: str,
    frontend_port: int,
    admin_socket: str,
    pidfile: str,
    server_slots: int,
    metrics_port: int | None = None,
) -> str:
    """The whole HAProxy config for one environment: a frontend and a backend of spare slots.

    Every slot starts in maintenance on a placeholder address; the router assigns an instance
    to a slot at run time (``set server ... addr``) and moves traffic by weight only.
    HAProxy's own check is a TCP connect: it takes an instance that died out of rotation within
    a second. Whether a release is healthy is judged by the pipeline (health path, smoke tests,
    analysis), so a release with another health path never needs a config change.
    ``retry-on conn-failure empty-response`` with ``redispatch`` sends a request that hit an
    instance which just went away to another one instead of failing it.
    """
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

frontend {FRONTEND}
    bind {frontend_host}:{frontend_port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
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

    def servers(self) -> list[SlotState]:
        return parse_stat(self.execute("show stat"))


def _int(value: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_stat(text: str) -> list[SlotState]:
    """Parse ``show stat`` CSV into the backend's server entries (frontend/backend rows dropped)."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        raise InfrastructureError(f"unexpected answer to 'show stat': {text[:120]!r}")
    reader = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    result = []
    for row in reader:
        if row.get("pxname") != BACKEND or row.get("svname") in ("FRONTEND", "BACKEND"):
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
