"""An error of prefect-delivery's own code is said as one, never as the user's bad input."""

from __future__ import annotations

import pytest

from prefect_delivery.blocks.errors import ConfigError, InternalError, is_retryable
from prefect_delivery.flows.cli import EXIT_BAD_INPUT, EXIT_INTERNAL, main


def test_a_bug_behind_a_command_is_an_internal_error_with_its_traceback(
    tmp_path, monkeypatch, capsys
):
    from pydantic import BaseModel, Field

    from prefect_delivery.tasks import dora_report

    class Interval(BaseModel):
        weight: float = Field(le=100)

    def buggy(*args, **kwargs):
        Interval(weight=200.0)  # the kind of bug that was reported as "bad input"

    monkeypatch.setattr(dora_report, "dora_report", buggy)
    monkeypatch.setenv("DELIVERY_STATE_DIR", str(tmp_path))
    assert main(["report", "--state-dir", str(tmp_path)]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("delivery: internal error in prefect-delivery (a bug, not your input)")
    assert "bad input" not in err and "ValidationError" in err
    logs = list((tmp_path / "logs").glob("internal-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    assert "Interval(weight=200.0)" in logs[0].read_text()  # the traceback, for the report


def test_bad_flags_stay_bad_input(tmp_path, capsys):
    code = main(["report", "--state-dir", str(tmp_path), "--env", "nowhere"])
    assert code == EXIT_BAD_INPUT
    assert "internal error" not in capsys.readouterr().err


def test_an_internal_error_is_never_retried_nor_bad_input():
    bug = InternalError.of(KeyError("slot"), "the logs of flow run 123")
    assert not isinstance(bug, ConfigError) and not is_retryable(bug)
    assert "KeyError" in str(bug) and "the logs of flow run 123" in str(bug)


def test_a_picture_that_cannot_be_made_is_a_warning(monkeypatch):
    """publish_rollout never raises, whatever step of making the picture fails (here: the
    records themselves, a weight of 200 % as two instances on one port once gave)."""
    from datetime import UTC, datetime

    from prefect_delivery.tasks import pictures

    class Interval:
        at = datetime.now(UTC)
        new_weight_pct = 200.0
        new_p50_ms = new_p95_ms = stable_p50_ms = stable_p95_ms = 1.0
        new_interval_error_rate = stable_interval_error_rate = 0.0
        stable_requests = 1
        outcome = "Successful"

    class Run:
        label = "verification"
        intervals = [Interval()]

    warnings = []

    class Logger:
        def warning(self, *args):
            warnings.append(args[0] % args[1:])

    monkeypatch.setattr("prefect_delivery.tasks.runtime.log.run_logger", lambda: Logger())
    with pytest.raises(Exception, match="weight"):
        pictures.from_analysis_runs([Run()])  # what used to escape the guard
    assert pictures.publish_rollout("production/hello-service", [Run()], "t") is None
    assert warnings and "could not draw the rollout picture" in warnings[0]
