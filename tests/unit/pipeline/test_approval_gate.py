"""The approval gate's pure parts: keys, the form, what the approver reads, the record."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from support.factories import release

from prefect_delivery.tasks.approve import (
    Approval,
    ApprovalDecision,
    UpstreamEvidence,
    approval_description,
    approval_key,
    decision_markdown,
    environment_of_key,
)


def test_keys_are_lowercase_letters_digits_dashes_one_per_environment_and_run():
    run = str(uuid4())
    key = approval_key("Production", run)
    assert re.fullmatch(r"[a-z0-9-]+", key)
    assert key != approval_key("staging", run) and key != approval_key("production", str(uuid4()))
    assert environment_of_key(key) == "production"
    assert environment_of_key(approval_key("eu-prod-2", run)) == "eu-prod-2"
    assert environment_of_key("other") is None and environment_of_key(None) is None
    assert environment_of_key("approve-production") is None


def test_the_form_has_described_fields_and_rejects_by_default():
    """Three to fill in (approved, approver, reason) and the release it is about (its service,
    commit, digest, author), filled in."""
    schema = Approval.model_json_schema()
    assert set(schema["properties"]) == {
        "approved",
        "approver",
        "reason",
        "commit",
        "digest",
        "author",
        "service",
    }
    assert set(schema["required"]) == {"approver", "reason"}
    for field in schema["properties"].values():
        assert field.get("description")
    assert schema["properties"]["approved"]["type"] == "boolean"
    assert Approval(approver="a", reason="b").approved is False
    with pytest.raises(ValueError):
        Approval(approved=True, approver="", reason="b")


def test_the_form_carries_the_description_the_ui_shows():
    form = Approval.with_initial_data(description="## hello", commit="c" * 40, digest="sha256:d")
    assert form._description == "## hello"
    assert set(form.model_fields) == {
        "approved",
        "approver",
        "reason",
        "commit",
        "digest",
        "author",
        "service",
    }
    schema = form.model_json_schema()["properties"]
    assert schema["commit"]["default"] == "c" * 40 and schema["digest"]["default"] == "sha256:d"


def evidence(errors_at: int | None = 0) -> UpstreamEvidence:
    """A real verdict of the judge on seeded observations: 400 requests a side."""
    import numpy as np

    from prefect_delivery.tasks.judge import Analysis, JudgePolicy, Observations

    rng = np.random.default_rng(1)
    analysis = Analysis(JudgePolicy(kind="verification"))
    for i in range(4):
        codes = np.full(100, 200)
        if errors_at is not None and i == errors_at:
            codes[0] = 500
        new = Observations.from_requests(rng.gamma(4, 1, 100), codes, ["/api"] * 100)
        stable = Observations.from_requests(rng.gamma(4, 1, 100), np.full(100, 200), ["/api"] * 100)
        verdict = analysis.update(new, stable)
    return UpstreamEvidence(
        environment="staging",
        url="http://127.0.0.1:18081",
        how="verified in this run",
        verdict=verdict,
    )


def test_the_description_names_commit_digest_numbers_and_phase():
    rel = release(3)
    text = approval_description("production", rel, evidence(), "| stage |", "expand", 600)
    for needle in (
        rel.commit,
        rel.digest,
        "**production**",
        "**Successful**: no regression shown",
        "400 (1 errors) on the release, 400 (0 errors) on the stable release",
        "| error rate | 0.25% |",
        "| p95 latency |",
        "| migration phase | `expand` |",
        "within 600s",
        "| stage |",
    ):
        assert needle in text, (needle, text)


def test_the_description_without_measurements():
    rel = release(4)
    first = approval_description("production", rel, evidence(None))
    assert "| migration phase | none |" in first and "| error rate | 0.00% |" in first
    recorded = UpstreamEvidence(
        environment="staging", url="u", how="already live there", verdict_line="Successful: 9"
    )
    assert "Recorded verdict: `Successful: 9`" in approval_description("p", rel, recorded)


@pytest.mark.parametrize(
    "kind,approved,word",
    [
        ("approved", True, "APPROVED"),
        ("rejected", False, "REJECTED"),
        ("timed-out", False, "TIMED OUT"),
        ("automatic", True, "automatically"),
    ],
)
def test_the_decision_record_says_who_why_when(kind, approved, word):
    rel = release(5)
    decision = ApprovalDecision(
        environment="production",
        release=rel,
        approved=approved,
        approver="alice",
        reason="ok | checked",
        decided_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        automatic=kind == "automatic",
        kind=kind,
    )
    text = decision_markdown(decision, "run-1")
    assert word in text and "alice" in text and "2030-01-02T03:04:05" in text
    assert "ok / checked" in text  # a pipe would break the table
    assert rel.digest in text and rel.commit in text
    assert decision.timed_out is (kind == "timed-out")
