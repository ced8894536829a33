"""The Router seam: how traffic reaches the instances of an environment.

A router puts weights on instance addresses, reads the live weights and per-slot traffic
counters, and attaches or detaches instances. Everything outside this package talks to the
``Router`` protocol and reads ``SlotState``; only ``blocks/routing/haproxy*.py`` knows the
router is HAProxy (Flagger's ``pkg/router`` and Argo Rollouts' ``trafficrouting`` keep the same
split).

``RouterBlock`` is the union of router Blocks an Environment may hold (a Block field needs a
concrete type for Prefect's schema); today that is one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

PLACEHOLDER_PORT = 1  # address of a slot that no instance holds


@dataclass(frozen=True)
class SlotState:
    """One router slot (a place an instance can be attached), as the router reports it now."""

    name: str
    address: str  # "host:port"
    status: str  # UP, DOWN, MAINT, DRAIN, "no check", ...
    weight: int
    current_sessions: int
    total_sessions: int
    responses_5xx: int
    responses_2xx: int
    responses_total: int  # every HTTP response the instance gave through the router
    connection_errors: int  # requests that got no answer from the instance
    avg_response_ms: int
    max_response_ms: int
    check_status: str
    responses_4xx: int = 0

    @property
    def in_use(self) -> bool:
        return self.status != "MAINT" and not self.address.endswith(f":{PLACEHOLDER_PORT}")

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])


@runtime_checkable
class Router(Protocol):
    """Moves an environment's traffic between instances by weight (milliseconds, no reload)."""

    name: str
    #: The response header in which the router names the slot that answered a request: which
    #: instance (and so which release) served it, whatever the application answers.
    identity_header: str

    @property
    def frontend_url(self) -> str:
        """Where users (and verification) reach the service in this environment."""

    @property
    def route_name(self) -> str:
        """What the router's own metrics call the service's backend (``{backend}`` in a
        Prometheus query)."""

    @property
    def capacity(self) -> int:
        """How many instances can be attached at once."""

    def ensure_started(self) -> None:
        """Start the router unless it runs with the same configuration (idempotent)."""

    def is_running(self) -> bool: ...

    def stop(self) -> None: ...

    def slots(self) -> list[SlotState]:
        """Every slot with its address, status, weight and counters, read live."""

    def weights(self) -> dict[str, int]:
        """Live weight per attached instance address."""

    def attach(self, address: str) -> str:
        """Attach an instance at weight 0; returns its slot."""

    def wait_until_up(self, address: str, timeout_s: float = 15.0) -> None:
        """Wait until the router's own check sees the instance up."""

    def set_weights(self, weights: dict[str, int]) -> float:
        """Apply weights in one change (raises before cuts); returns milliseconds taken."""

    def drain(self, address: str, timeout_s: float = 10.0) -> None:
        """Weight 0, then wait until the instance has no open sessions."""

    def detach(self, address: str) -> None:
        """Take the instance out of its slot."""


def control_from_settings(settings: dict) -> Router:
    """The runtime client of a router as an environment's snapshot records its Block (no
    Prefect): the part of the Router protocol that reads and changes weights."""
    from prefect_delivery.blocks.routing.haproxy_runtime import HAProxyControl

    return HAProxyControl.of(  # type: ignore[return-value]
        settings["state_dir"], settings["name"], settings.get("service")
    )


def __getattr__(name: str) -> object:
    # Imported lazily, so that reading SlotState needs no Prefect import.
    if name == "RouterBlock":  # the Block union an Environment's `router` holds
        from prefect_delivery.blocks.routing.haproxy import HAProxyRouter

        return HAProxyRouter
    if name == "EXPORTER_QUERIES":  # PromQL (requests, errors, latency ms) for its exporter
        from prefect_delivery.blocks.routing.haproxy_runtime import EXPORTER_QUERIES

        return EXPORTER_QUERIES
    raise AttributeError(name)
