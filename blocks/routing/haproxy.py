"""HAProxyRouter: one HAProxy per environment, traffic moved by weight through the admin socket.

The project writes the config (a frontend and a backend of spare server slots), starts HAProxy
on the environment's loopback port, and from then on only talks to its runtime API: assign an
instance to a slot, read weights and stats, set weights. A weight change is not a reload; that
is what makes a rollback take milliseconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field, field_validator

from prefect_delivery.blocks.errors import ConfigError, InfrastructureError
from prefect_delivery.blocks.paths import default_state_dir, pid_alive
from prefect_delivery.blocks.routing import PLACEHOLDER_PORT, SlotState
from prefect_delivery.blocks.routing.haproxy_runtime import BACKEND, RuntimeAPI, render_config

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin


def daemon_env() -> dict[str, str]:
    """A minimal environment for HAProxy: it outlives the run and needs none of its settings
    (and must not inherit an API key or any other secret the run has)."""
    return {k: os.environ[k] for k in ("PATH", "LANG", "TZ") if k in os.environ}


class HAProxyRouter(Block):
    """Routes an environment's traffic with HAProxy; weights change through the runtime API."""

    _block_type_name = "HAProxy Router"
    _block_type_slug = "haproxy-router"
    _description = (
        "One HAProxy per environment on a loopback port; the pipeline shifts traffic between "
        "releases by changing server weights over HAProxy's admin socket (no reload)."
    )

    name: str = Field(description="Environment this router serves; names its state folder.")
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
        return Path(self.state_dir) / "haproxy" / self.name

    @property
    def config_path(self) -> Path:
        return self.workdir / "haproxy.cfg"

    @property
    def socket_path(self) -> Path:
        return self.workdir / "admin.sock"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "haproxy.pid"

    @property
    def frontend_url(self) -> str:
        return f"http://{self.frontend_host}:{self.frontend_port}"

    @property
    def capacity(self) -> int:
        return self.server_slots

    def api(self) -> RuntimeAPI:
        return RuntimeAPI(str(self.socket_path))

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def is_running(self) -> bool:
        if self.pid() is None:
            return False
        try:
            self.api().execute("show info")
        except InfrastructureError:
            return False
        return True

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
        for server in live:
            host, port = server.address.rsplit(":", 1)
            self.api().checked(
                f"set server {BACKEND}/{server.name} addr {host} port {port}",
                f"set server {BACKEND}/{server.name} weight {server.weight}",
                f"set server {BACKEND}/{server.name} state ready",
            )

    def stop(self) -> None:
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

    # ----------------------------------------------------------------- reading
    def slots(self) -> list[SlotState]:
        """Every backend slot with its address, status, weight and counters, read live."""
        return self.api().servers()

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
            f"set server {BACKEND}/{slot} addr {host} port {port}",
            f"set server {BACKEND}/{slot} weight 0",
            f"set server {BACKEND}/{slot} state ready",
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
        commands = [f"set server {BACKEND}/{slots[a]} weight {weights[a]}" for a in ordered]
        started = time.perf_counter()
        self.api().checked(*commands)
        return (time.perf_counter() - started) * 1000

    def drain(self, address: str, timeout_s: float = 10.0) -> None:
        """Weight 0, then wait until the instance has no open sessions left."""
        slot = self._slot_of(address).name
        self.api().checked(f"set server {BACKEND}/{slot} weight 0")
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
            f"set server {BACKEND}/{slot} weight 0",
            f"set server {BACKEND}/{slot} state maint",
            f"set server {BACKEND}/{slot} addr 127.0.0.1 port {PLACEHOLDER_PORT}",
        )
