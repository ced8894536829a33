"""Retry policy shared by every stage task: retry infrastructure faults, never verdicts."""

from __future__ import annotations

from typing import Any

from prefect_delivery.blocks.errors import is_retryable

#: Backoff between attempts of a stage task (seconds); three attempts in all.
RETRY_DELAYS = [1, 4]


def retry_on_infra(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: only an infrastructure fault earns another attempt."""
    data = getattr(state, "data", None)
    exc = data if isinstance(data, BaseException) else None
    if exc is None:
        try:
            exc = state.result(raise_on_failure=False)
        except Exception as raised:  # noqa: BLE001 - reading the result may raise the error itself
            exc = raised
    return is_retryable(exc if isinstance(exc, BaseException) else None)


#: keyword arguments for @task on stages that talk to infrastructure
INFRA_RETRIES: dict[str, Any] = {
    "retries": len(RETRY_DELAYS),
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_condition_fn": retry_on_infra,
}
