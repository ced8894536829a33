"""Hand-built domain objects for pure-logic tests."""

from datetime import UTC, datetime

from prefect_delivery.blocks.live import join_live_state
from prefect_delivery.blocks.release import Artifact, Instance, Release, RunSpec
from prefect_delivery.blocks.routing import SlotState


def release(n: int, version: str | None = None) -> Release:
    digest = "sha256:" + f"{n:x}" * 64
    return Release(
        service="svc",
        version=version or f"1.{n}.0",
        commit=f"{n:x}" * 40,
        artifact=Artifact(kind="wheel", digest=digest[:71], uri=f"/a/{n}.whl"),
        run=RunSpec(command=["python", "-m", "svc", "--port", "{port}"]),
    )


def instance(rel: Release, port: int, slot: str = "blue", alive: bool = True) -> Instance:
    return Instance(
        id=f"env-{port}",
        environment="env",
        service="svc",
        slot=slot,
        release=rel,
        port=port,
        started_at=datetime.now(UTC),
        handle=f"{port}:1",
        alive=alive,
    )


def server(name: str, port: int, weight: int, status: str = "UP") -> SlotState:
    return SlotState(
        name=name,
        address=f"127.0.0.1:{port}",
        status=status,
        weight=weight,
        current_sessions=0,
        total_sessions=0,
        responses_5xx=0,
        responses_2xx=0,
        responses_total=0,
        connection_errors=0,
        avg_response_ms=0,
        max_response_ms=0,
        check_status="L7OK",
    )


def live(instances, servers):
    return join_live_state("env", "http://127.0.0.1:1", servers, instances, True)
