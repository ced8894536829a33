"""Milestone events: names, and the environment, commit and digest as resources."""

from __future__ import annotations

import pytest
from support.factories import release

from prefect_delivery.tasks.runtime.events import MILESTONES, event_name, resources


def test_every_milestone_has_a_delivery_release_name():
    assert [event_name(m) for m in MILESTONES] == [
        "delivery.release.deployed",
        "delivery.release.promoted",
        "delivery.release.rolled-back",
        "delivery.release.verification-failed",
        "delivery.release.approval-requested",
        "delivery.release.approval-decided",
    ]
    with pytest.raises(ValueError):
        event_name("released")


def test_resources_name_environment_commit_digest_and_source():
    rel = release(7)
    resource, related = resources("production", "monitor", rel)
    assert resource["prefect.resource.id"] == "delivery.environment.production"
    assert resource["delivery.source"] == "monitor"
    assert resource["delivery.commit"] == rel.commit and resource["delivery.digest"] == rel.digest
    roles = {r["prefect.resource.role"]: r["prefect.resource.id"] for r in related}
    assert roles == {
        "service": "delivery.service.svc",
        "commit": f"delivery.commit.{rel.commit}",
        "artifact": f"delivery.artifact.{rel.digest}",
    }


def test_a_monitor_may_know_only_the_environment():
    resource, related = resources("staging", "monitor")
    assert resource == {
        "prefect.resource.id": "delivery.environment.staging",
        "prefect.resource.name": "staging",
        "delivery.environment": "staging",
        "delivery.source": "monitor",
    }
    assert related == []


def test_events_are_valid_prefect_events():
    from prefect.events import Event

    resource, related = resources("production", "pipeline", release(8))
    event = Event(event=event_name("deployed"), resource=resource, related=related)
    assert event.resource.id == "delivery.environment.production"
    assert {r.role for r in event.related} == {"service", "commit", "artifact"}
