"""prefect.yaml and the server-side automations, checked without a server."""

from __future__ import annotations

from pathlib import Path

import yaml

from prefect_delivery.flows.cli.server_setup import QUIET_AFTER, zombie_automation

ROOT = Path(__file__).resolve().parents[3]


def deployments() -> dict[str, dict]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {f"{d['entrypoint'].split(':')[1]}/{d['name']}": d for d in config["deployments"]}


def test_prefect_yaml_declares_the_deployments():
    found = deployments()
    assert set(found) >= {
        "delivery/hello-service",
        "delivery/release-window",
        "rollback/production",
        "rollback/staging",
    }
    assert found["delivery/hello-service"]["parameters"]["environments"] == [
        "staging",
        "production",
    ]
    for env in ("production", "staging"):
        assert found[f"rollback/{env}"]["parameters"]["environment"] == env
    window = found["delivery/release-window"]
    assert window["schedules"][0]["cron"] == "0 10 * * 1-4"
    assert window["parameters"]["approval_mode"] == "suspend"
    for deployment in found.values():
        assert deployment["work_pool"]["name"] == "delivery-process"
        assert "delivery" in deployment["tags"]  # the zombie automation watches this tag


def test_the_pull_step_is_offline_and_reads_the_project_folder_at_run_time():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert config["pull"] == [
        {
            "prefect.deployments.steps.set_working_directory": {
                "directory": "{{ $DELIVERY_PROJECT_DIR }}"
            }
        }
    ]
    assert "git_clone" not in (ROOT / "prefect.yaml").read_text()


def test_rollback_triggers_fire_only_for_a_monitors_verification_failed():
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    for env in ("production", "staging"):
        (spec,) = deployments()[f"rollback/{env}"]["triggers"]
        trigger = DeploymentEventTrigger.model_validate(spec)
        assert trigger.expect == {"delivery.release.verification-failed"}
        assert trigger.match.model_dump() == {
            "prefect.resource.id": f"delivery.environment.{env}",
            "delivery.source": "monitor",
        }
        assert trigger.parameters["environment"] == env


def test_the_zombie_automation_leaves_suspended_runs_alone_but_not_silent_paused_ones():
    automation = zombie_automation(30)
    trigger = automation.trigger
    assert trigger.posture == "Proactive"
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert trigger.expect == {"prefect.flow-run.heartbeat", *QUIET_AFTER}
    assert "prefect.flow-run.Suspended" in trigger.expect
    assert "prefect.flow-run.Paused" not in trigger.expect
    assert trigger.within.total_seconds() == 90
    assert trigger.for_each == {"prefect.resource.id"}
    assert trigger.match_related.model_dump() == {"prefect.resource.id": "prefect.tag.delivery"}
    (action,) = automation.actions
    assert action.type == "change-flow-run-state" and action.state.value == "CRASHED"


def test_the_heartbeat_the_deployments_send_matches_the_automation():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pool = config["definitions"]["work_pools"]["process"]
    assert pool["job_variables"]["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
