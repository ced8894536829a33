"""Answering an approval gate from outside the run: what ``delivery approve``/``reject`` do.

The Prefect UI does the same when a person clicks Resume: read the run's pause (its input
keyset), then POST the answer as ``run_input`` to ``/flow_runs/<id>/resume``, where the server
validates it against the schema the run saved and stores it for the run to load. The checks
here (a run id, a run waiting at an approval gate and not elsewhere, a form that is an
``Approval``) come first, so a wrong answer changes nothing.
"""

from __future__ import annotations

import json
from uuid import UUID

from pydantic import BaseModel

from prefect_delivery.blocks.errors import ConfigError, InfrastructureError, VerdictError
from prefect_delivery.tasks.approve import environment_of_key


class AnswerResult(BaseModel):
    flow_run_id: str
    flow_run_name: str
    environment: str
    service: str = ""
    approved: bool
    state: str


def _not_an_approval(run_id: str, name: str, what: str) -> ConfigError:
    return ConfigError(
        f"flow run {run_id} ({name})",
        f"is paused for something else ({what}), not for a delivery approval.",
        "resume it in the Prefect UI; `delivery approve` only answers approval gates.",
    )


def approver_refusal(environment: str, approver: str, shown: dict[str, str]) -> str | None:
    """The policy on who may approve (the environment's, with the service's route on top),
    checked before the run is resumed (the run checks it again: it is the authority)."""
    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.tasks.promotion import answer_refusal

    try:
        env = Environment.load(environment)
        if shown.get("service"):
            env = env.for_service(shown["service"])
    except (ValueError, RuntimeError, ConfigError):
        return None  # the run checks it against the block it loaded
    commit = shown.get("commit") or "0" * 40
    release = _Shown(commit=commit, author=shown.get("author") or None)
    return answer_refusal(env.promotion, env.name, approver, release)


class _Shown(BaseModel):
    """The part of a release an approval form shows (for the refusal message)."""

    commit: str
    author: str | None = None


def answer_approval(
    run_id: str, approved: bool, approver: str, reason: str, service: str | None = None
) -> AnswerResult:
    """Resume a run paused at an approval gate with an ``Approval`` answer; with ``service``,
    only if the run waits with a release of that service.

    The Prefect UI does the same: read the run's pause (its input keyset), then POST the
    answer as ``run_input`` to ``/flow_runs/<id>/resume``, where the server validates it
    against the schema the run saved and stores it for the run to load.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.exceptions import ObjectNotFound

    try:
        flow_run_id = UUID(str(run_id).strip())
    except ValueError:
        raise ConfigError(
            "RUN_ID", f"{run_id!r} is not a flow run id (a UUID).", "copy it from the UI."
        ) from None
    if not approver.strip():
        raise ConfigError("--approver", "is empty.", "say who decides (a name or handle).")
    if not reason.strip():
        raise ConfigError("--reason", "is empty.", "say why; it is recorded with the release.")

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            raise ConfigError(
                f"flow run {flow_run_id}",
                f"does not exist on this Prefect API ({client.api_url}).",
                "check the id and PREFECT_API_URL (`prefect flow-run ls --state PAUSED`).",
            ) from None
        state = run.state
        if state is None or not state.is_paused():
            name = state.name if state else "no state"
            hint = (
                "its process died while it waited; start a new delivery."
                if state is not None and state.is_crashed()
                else "only a run waiting at an approval gate (Paused or Suspended) can be answered."
            )
            raise ConfigError(
                f"flow run {flow_run_id} ({run.name})",
                f"is not waiting for approval: its state is {name}.",
                hint,
            )
        key = state.state_details.pause_key
        keyset = state.state_details.run_input_keyset
        environment = environment_of_key(key)
        if environment is None or not keyset:
            raise _not_an_approval(str(flow_run_id), run.name, f"pause key {key!r}")
        try:
            schema = json.loads(client.read_flow_run_input(flow_run_id, keyset["schema"]))
        except (ObjectNotFound, ValueError, TypeError):
            schema = {}
        if isinstance(schema, str):  # stored as a JSON document inside a JSON string
            schema = json.loads(schema)
        if not {"approved", "approver", "reason"} <= set(schema.get("properties", {})):
            raise _not_an_approval(str(flow_run_id), run.name, "its form is not an Approval")

        shown = {
            name: prop.get("default", "")
            for name, prop in schema.get("properties", {}).items()
            if name in ("commit", "digest", "author", "service")
        }
        if service and shown.get("service") and shown["service"] != service:
            raise ConfigError(
                f"--service {service}",
                f"flow run {flow_run_id} ({run.name}) waits with a release of "
                f"{shown['service']!r}, not {service!r}; nothing was answered.",
                "check the run id (the Prefect UI, filtered by the service's tag), or the "
                "--service you meant.",
            )
        if approved:
            refusal = approver_refusal(environment, approver, shown)
            if refusal:
                raise ConfigError(f"--approver {approver!r}", refusal)
        result = client.resume_flow_run(
            flow_run_id,
            run_input={
                "approved": approved,
                "approver": approver,
                "reason": reason,
                "commit": shown.get("commit", ""),
                "digest": shown.get("digest", ""),
                "author": shown.get("author", ""),
                "service": shown.get("service", ""),
            },
        )
    if result.status == SetStateStatus.ACCEPT:
        return AnswerResult(
            flow_run_id=str(flow_run_id),
            flow_run_name=run.name,
            environment=environment,
            service=shown.get("service", ""),
            approved=approved,
            state=result.state.name if result.state else "",
        )
    detail = getattr(result.details, "reason", "") or ""
    if result.state is not None and result.state.is_failed():
        raise VerdictError(
            f"flow run {flow_run_id} ({run.name}) can no longer be answered: its approval "
            f"window closed (timed out). {detail}".strip()
        )
    raise InfrastructureError(f"the server did not resume flow run {flow_run_id}: {detail}")
