"""`delivery report` through the CLI on a hand-built ledger and environment snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from support.factories import release

from prefect_delivery.blocks.ledger import LedgerEntry
from prefect_delivery.flows.cli import main


def _environment(state_dir, name):
    from prefect_delivery.blocks.settings import StrategySettings
    from prefect_delivery.flows.cli.setup import environment

    environment(name, 18999, str(state_dir), StrategySettings(), 0.0, False).remember()


def _write(state_dir, name, entries):
    path = state_dir / "ledger" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(e.model_dump_json() + "\n" for e in entries))


def test_report_prints_the_figures_and_json(tmp_path, capsys):
    now = datetime.now(UTC)
    a, b = release(1), release(2)
    _environment(tmp_path, "production")
    rows = [
        (5, "deployed", a, {"committed_at": (now - timedelta(hours=6)).isoformat()}),
        (4.9, "verified", a, {}),
        (2, "deployed", b, {}),
        (1.9, "verified", b, {}),
        (1, "rolled-back", b, {"reason": "monitor: 5xx", "to": a.digest}),
    ]
    entries = [
        LedgerEntry(
            at=now - timedelta(hours=h), environment="production", event=e, release=r, details=d
        )
        for h, e, r, d in rows
    ]
    _write(tmp_path, "production", entries)
    assert main(["report", "--state-dir", str(tmp_path), "--since", "7"]) == 0
    out = capsys.readouterr().out
    # a ledger written before services: its one service is read as a registered one
    assert "production/svc:" in out and "change failure rate   50% (1 failed" in out
    assert "1 without a commit time" in out  # b's commit is in no repository
    assert main(["report", "--state-dir", str(tmp_path), "--json", "--env", "production"]) == 0
    (data,) = json.loads(capsys.readouterr().out)
    assert data["verified"] == 2 and data["failed"] == 1
    # a: committed 6 h ago, verified 4.9 h ago
    assert data["lead_time"]["median_s"] == pytest.approx(1.1 * 3600, abs=1)
    assert data["time_to_restore"]["median_s"] == 0.0  # the switch went to verified a


def test_bad_input_is_one_message_and_exit_2(tmp_path, capsys):
    _environment(tmp_path, "production")
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--state-dir", str(tmp_path), "--since", "-3"])
    assert exit_.value.code == 2 and "greater than 0" in capsys.readouterr().err
    assert main(["report", "--state-dir", str(tmp_path), "--env", "nowhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "environment 'nowhere'" in err[0] and "production" in err[0]
