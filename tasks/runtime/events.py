"""Milestone events of a release, for the Prefect event feed and automations.

Every event is ``delivery.release.<milestone>`` with the environment as its primary resource
(``delivery.environment.<name>``) and the service, the commit and the artifact digest as
related resources, so the event feed can be filtered by any of them and an automation can match
on them (a monitor's alert acts on the service it names only):

    resource  prefect.resource.id = delivery.environment.production
              delivery.environment, delivery.service, delivery.version, delivery.commit,
              delivery.digest, delivery.source (pipeline | monitor)
    related   delivery.commit.<sha>            role commit
              delivery.artifact.<digest>       role artifact
              delivery.service.<name>          role service
              (+ the flow run, flow and deployment, added by Prefect inside a run)

``delivery.source`` says who judged: ``pipeline`` for the delivery flow itself (which already
rolled back what it had to), ``monitor`` for a check outside any delivery run (``delivery
monitor-alert`` or your own monitoring). The rollback automations in prefect.yaml react only
to ``verification-failed`` events from a monitor.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect_delivery.blocks.release import Release
from prefect_delivery.blocks.secrets import mask_data
from prefect_delivery.tasks.runtime.log import run_logger

PREFIX = "delivery.release."
MILESTONES = (
    "deployed",
    "promoted",
    "rolled-back",
    "verification-failed",
    "approval-requested",
    "approval-decided",
)
Source = Literal["pipeline", "monitor"]


def event_name(milestone: str) -> str:
    if milestone not in MILESTONES:
        raise ValueError(f"unknown milestone {milestone!r}; one of {', '.join(MILESTONES)}")
    return PREFIX + milestone


def environment_resource_id(environment: str) -> str:
    return f"delivery.environment.{environment}"


def resources(
    environment: str,
    source: Source,
    release: Release | None = None,
    commit: str | None = None,
    digest: str | None = None,
    service: str | None = None,
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The primary resource (the environment) and the related ones (service, commit,
    artifact)."""
    commit = commit or (release.commit if release else None)
    digest = digest or (release.digest if release else None)
    service = service or (release.service if release else None)
    resource = {
        "prefect.resource.id": environment_resource_id(environment),
        "prefect.resource.name": environment,
        "delivery.environment": environment,
        "delivery.source": source,
    }
    related: list[dict[str, str]] = []
    if service:
        resource["delivery.service"] = service
        related.append(
            {
                "prefect.resource.id": f"delivery.service.{service}",
                "prefect.resource.role": "service",
                "prefect.resource.name": service,
            }
        )
    if release is not None:
        resource["delivery.version"] = release.version
    if commit:
        resource["delivery.commit"] = commit
        related.append(
            {
                "prefect.resource.id": f"delivery.commit.{commit}",
                "prefect.resource.role": "commit",
                "prefect.resource.name": commit[:12],
            }
        )
    if digest:
        resource["delivery.digest"] = digest
        related.append(
            {
                "prefect.resource.id": f"delivery.artifact.{digest}",
                "prefect.resource.role": "artifact",
                "prefect.resource.name": digest.split(":", 1)[-1][:12],
            }
        )
    return resource, related


def emit(
    milestone: str,
    environment: str,
    release: Release | None = None,
    *,
    source: Source = "pipeline",
    commit: str | None = None,
    digest: str | None = None,
    service: str | None = None,
    **payload: Any,
) -> Any:
    """Emit one milestone event; returns the Event (None when events are off).

    An event is a record, not a gate: a failure to emit is logged and never stops a delivery.
    """
    from prefect.events import emit_event

    resource, related = resources(environment, source, release, commit, digest, service)
    try:
        return emit_event(
            event=event_name(milestone),
            resource=resource,
            related=related,
            payload=mask_data({k: v for k, v in payload.items() if v is not None}),
        )
    except Exception as exc:  # noqa: BLE001 - an event is a record, not a gate
        run_logger().warning("could not emit %s for %s: %s", milestone, environment, exc)
        return None


# ---------------------------------------------------------------------------- milestones
def deployed(environment: str, release: Release, strategy: str, verdict: str = "") -> Any:
    return emit("deployed", environment, release, strategy=strategy, verdict=verdict)


def promoted(environment: str, release: Release, upstream: str) -> Any:
    return emit("promoted", environment, release, upstream=upstream)


def rolled_back(
    environment: str,
    release: Release | None,
    reason: str,
    to: Release | None = None,
    source: Source = "pipeline",
) -> Any:
    return emit(
        "rolled-back",
        environment,
        release,
        source=source,
        reason=reason,
        to_commit=to.commit if to else None,
        to_digest=to.digest if to else None,
    )


def verification_failed(
    environment: str,
    release: Release | None,
    reason: str,
    gate: str = "verification",
    source: Source = "pipeline",
    commit: str | None = None,
    digest: str | None = None,
    service: str | None = None,
) -> Any:
    return emit(
        "verification-failed",
        environment,
        release,
        source=source,
        commit=commit,
        digest=digest,
        service=service,
        gate=gate,
        reason=reason,
    )


def approval_requested(
    environment: str, release: Release, key: str, timeout_s: int, mode: str
) -> Any:
    return emit(
        "approval-requested",
        environment,
        release,
        pause_key=key,
        timeout_s=timeout_s,
        mode=mode,
    )


def approval_decided(
    environment: str,
    release: Release,
    decision: str,
    approver: str,
    reason: str,
    decided_at: str,
    automatic: bool,
) -> Any:
    return emit(
        "approval-decided",
        environment,
        release,
        decision=decision,
        approver=approver,
        reason=reason,
        decided_at=decided_at,
        automatic=automatic,
    )
