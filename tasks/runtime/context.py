"""What the current Prefect run is, for records (ledger lines, checkpoints, leases)."""

from __future__ import annotations


def current_run_id() -> str | None:
    """The id of the flow run this code runs in, or None outside a run."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return str(run_id) if run_id else None
