"""HAProxyRouter: one HAProxy per environment, traffic moved by weight through the admin socket.

The project writes the config (a frontend and a backend of spare server slots), starts HAProxy
on the environment's loopback port, and from then on only talks to its runtime API: assign an
instance to a slot, read weights and stats, set weights. A weight change is not a reload; that
is what makes a rollback take milliseconds.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import Field, field_validator

from prefect_delivery.blocks.errors import ConfigError, InfrastructureError
from prefect_delivery.blocks.paths import default_state_dir
from prefect_delivery.blocks.routing import SlotState
from prefect_delivery.blocks.routing.haproxy_runtime import (
    IDENTITY_HEADER,
    HAProxyControl,
    RuntimeAPI,
    render_config,
)
from prefect_delivery.blocks.schema_cache import SchemaOnce

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin


def daemon_env() -> dict[str, str]:
    """A minimal environment for HAProxy: it outlives the run and needs none of its settings
    (and must not inherit an API key or any other secret the run has)."""
    return {k: os.environ[k] for k in ("PATH", "LANG", "TZ") if k in os.environ}


class HAProxyRouter(SchemaOnce, Block):
    """Routes an environment's traffic with HAProxy; weights change through the runtime API."""

    _block_type_name = "HAProxy Router"
    _block_type_slug = "haproxy-router"
    _description = (
        "One HAProxy per environment on a loopback port; the pipeline shifts traffic between "
        "releases by changing server weights over HAProxy's admin socket (no reload)."
    )

    identity_header: ClassVar[str] = IDENTITY_HEADER

    name: str = Field(description="Environment this router serves; names its state folder.")
    service: str | None = Field(
        default=None,
        description="The service this router serves (set per service: the environment's "
        "block holds the settings every service's router shares, each service's route its "
        "port). Names its folder, frontend and backend.",
    )
    frontend_host: str = Field(default="127.0.0.1", description="Address users connect to.")
    frontend_port: int = Field(description="Port users connect to.", ge=1, le=65535)
    server_slots: int = Field(
        default=8, ge=2, le=64, description="Backend slots; an instance occupies one."
    )
    state_dir: str = Field(
        default_factory=default_state_dir,
        description="Folder for the HAProxy config, pidfile and admin socket.",
    )
    haproxy_bin: str = Field(default="haproxy", description="HAProxy executable.")
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve HAProxy's Prometheus exporter on this loopback port (/metrics).",
    )

    @field_validator("frontend_host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        if not value.startswith("127."):
            raise ValueError(
                f"frontend_host {value!r} is not a loopback address; this router binds "
                "127.0.0.0/8 addresses only (e.g. 127.0.0.1)"
            )
        return value

    # ----------------------------------------------------------------- paths and liveness
    @property
    def workdir(self) -> Path:
        return self.control().workdir

    @property
    def config_path(self) -> Path:
        return self.workdir / "haproxy.cfg"

    @property
    def socket_path(self) -> Path:
        return self.control().socket_path

    @property
    def pidfile(self) -> Path:
        return self.control().pidfile

    @property
    def frontend_url(self) -> str:
        return f"http://{self.frontend_host}:{self.frontend_port}"

    @property
    def route_name(self) -> str:
        return self.control().backend

    @property
    def capacity(self) -> int:
        return self.server_slots

    def api(self) -> RuntimeAPI:
        return self.control().api()

    def pid(self) -> int | None:
        return self.control().pid()

    def is_running(self) -> bool:
        return self.control().is_running()

    # ----------------------------------------------------------------- lifecycle
    def _haproxy(self) -> str:
        path = shutil.which(self.haproxy_bin)
        if not path:
            raise ConfigError(
                f"router '{self.name}'",
                f"HAProxy executable {self.haproxy_bin!r} was not found on PATH.",
                "install it (Debian/Ubuntu: `sudo apt-get install haproxy`) or set the "
                "router block's haproxy_bin to its full path.",
            )
        return path

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.frontend_host, self.frontend_port))
            except OSError as exc:
                raise ConfigError(
                    f"router '{self.name}' frontend_port",
                    f"{self.frontend_host}:{self.frontend_port} is already in use by another "
                    f"process ({exc.strerror}).",
                    "stop that process, or choose a free port in the router block (frontend_port).",
                ) from exc

    def ensure_started(self) -> None:
        """Start HAProxy for this environment unless it runs already with the same config."""
        haproxy = self._haproxy()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"router '{self.name}' state_dir",
                f"the admin socket path {str(self.socket_path)!r} is longer than a unix socket "
                f"allows ({MAX_SOCKET_PATH} characters).",
                "choose a shorter state_dir.",
            )
        config = render_config(
            frontend_host=self.frontend_host,
            frontend_port=self.frontend_port,
            admin_socket=str(self.socket_path),
            pidfile=str(self.pidfile),
            server_slots=self.server_slots,
            metrics_port=self.metrics_port,
            service=self.service,
        )
        running = self.is_running()
        if running and self.config_path.exists() and self.config_path.read_text() == config:
            return
        if running:
            # A config change (another port, more slots) needs a reload; weights never do.
            # Carry over what is live so the reload does not drop the current assignment.
            live = [s for s in self.slots() if s.in_use]
            self._write_and_check(haproxy, config)
            old_pid = self.pid()
            self._spawn(haproxy, extra=["-sf", str(old_pid)] if old_pid else [])
            self._restore(live)
            return
        self._check_port_free()
        self._write_and_check(haproxy, config)
        self._spawn(haproxy)

    def _write_and_check(self, haproxy: str, config: str) -> None:
        tmp = self.config_path.with_suffix(".cfg.new")
        tmp.write_text(config)
        check = subprocess.run(
            [haproxy, "-c", "-q", "-f", str(tmp)], capture_output=True, text=True, timeout=30
        )
        if check.returncode != 0:
            raise InfrastructureError(
                f"HAProxy rejected the generated config for '{self.name}': "
                f"{(check.stderr or check.stdout).strip()[-500:]}"
            )
        os.replace(tmp, self.config_path)

    def _spawn(self, haproxy: str, extra: list[str] | None = None) -> None:
        log = open(self.workdir / "haproxy.log", "ab")  # noqa: SIM115 - handed to the daemon
        try:
            proc = subprocess.run(
                [
                    haproxy,
                    "-D",
                    "-f",
                    str(self.config_path),
                    "-p",
                    str(self.pidfile),
                    *(extra or []),
                ],
                env=daemon_env(),
                stdout=log,
                stderr=log,
                timeout=30,
                start_new_session=True,
            )
        finally:
            log.close()
        if proc.returncode != 0:
            tail = (self.workdir / "haproxy.log").read_text(errors="replace")[-600:]
            raise InfrastructureError(f"HAProxy for '{self.name}' did not start: {tail.strip()}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.is_running():
                return
            time.sleep(0.05)
        raise InfrastructureError(
            f"HAProxy for '{self.name}' started but its socket never answered"
        )

    def _restore(self, live: list[SlotState]) -> None:
        backend = self.control().backend
        for server in live:
            host, port = server.address.rsplit(":", 1)
            self.api().checked(
                f"set server {backend}/{server.name} addr {host} port {port}",
                f"set server {backend}/{server.name} weight {server.weight}",
                f"set server {backend}/{server.name} state ready",
            )

    def stop(self) -> None:
        self.control().stop()

    # ----------------------------------------------------------------- the runtime API
    def control(self) -> HAProxyControl:
        """The client of this router's admin socket (weights, slots): no Prefect needed."""
        return HAProxyControl.of(self.state_dir, self.name, self.service)

    def slots(self) -> list[SlotState]:
        return self.control().slots()

    def weights(self) -> dict[str, int]:
        return self.control().weights()

    def attach(self, address: str) -> str:
        return self.control().attach(address)

    def wait_until_up(self, address: str, timeout_s: float = 15.0) -> None:
        self.control().wait_until_up(address, timeout_s)

    def set_weights(self, weights: dict[str, int]) -> float:
        return self.control().set_weights(weights)

    def drain(self, address: str, timeout_s: float = 10.0) -> None:
        self.control().drain(address, timeout_s)

    def detach(self, address: str) -> None:
        self.control().detach(address)
