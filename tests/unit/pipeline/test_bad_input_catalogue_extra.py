"""Bad input the README's catalogue lists that no other test pinned down: each is refused
before anything runs, with a message that names the field and the value."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.settings import StrategySettings, VerificationSettings


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("max_error_rate", 1.5, "less than or equal to 1"),
        ("latency_tolerance", -0.1, "greater than or equal to 0"),
        ("requests", 0, "greater than or equal to 1"),
        ("concurrency", 65, "less than or equal to 64"),
        ("max_error", 0.05, "Extra inputs are not permitted"),
    ],
)
def test_verification_thresholds_out_of_range_are_refused(field, value, needle):
    with pytest.raises(ValidationError) as info:
        VerificationSettings(**{field: value})
    message = str(info.value)
    assert field in message and needle in message


def test_empty_canary_steps_are_refused():
    with pytest.raises(ValidationError, match="canary_steps is empty"):
        StrategySettings(kind="canary", canary_steps=[])


def _environment():
    from prefect_delivery.flows.cli.setup import environment

    return environment("stg", 1, "/tmp/x", StrategySettings(), 0, False)


def test_environment_name_must_be_a_slug():
    env = _environment()
    with pytest.raises(ValidationError, match="environment name 'Prod Env' must be lowercase"):
        type(env).model_validate({**env.model_dump(), "name": "Prod Env"})


def test_environment_capacity_below_one_is_refused():
    env = _environment()
    with pytest.raises(ValidationError) as info:
        type(env).model_validate({**env.model_dump(), "capacity": 0})
    message = str(info.value)
    assert "capacity" in message and "greater than or equal to 1" in message


def test_environment_list_that_is_empty_or_repeats_a_name_is_refused():
    from prefect_delivery.flows.delivery import _check_environments

    with pytest.raises(ConfigError, match="environments: is empty") as info:
        _check_environments([])
    assert "Fix:" in str(info.value)
    with pytest.raises(ConfigError, match=r"\['stg', 'stg'\] names an environment twice"):
        _check_environments(["stg", "stg"])


def test_approval_answer_is_checked_before_the_api_is_asked():
    from prefect_delivery.tasks.approval_answer import answer_approval

    run_id = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(ConfigError, match=r"RUN_ID: 'not-a-run' is not a flow run id \(a UUID\)"):
        answer_approval("not-a-run", True, "alice", "looks good")
    with pytest.raises(ConfigError, match="--approver: is empty") as info:
        answer_approval(run_id, True, "  ", "looks good")
    assert "say who decides" in str(info.value)
    with pytest.raises(ConfigError, match="--reason: is empty") as info:
        answer_approval(run_id, False, "alice", "")
    assert "recorded with the release" in str(info.value)


def test_lint_command_that_is_not_installed():
    from prefect_delivery.tasks.build import _tool

    with pytest.raises(ConfigError) as info:
        _tool(["no-such-linter-7f3a", "check", "."])
    message = str(info.value)
    assert message.startswith("build.lint: the lint command 'no-such-linter-7f3a' was not found")
    assert "[build].lint" in message


def test_package_that_cannot_be_found(tmp_path: Path):
    from prefect_delivery.tasks.build import find_package

    with pytest.raises(ConfigError, match="'svc' has no __init__.py under src/"):
        find_package(tmp_path, "svc")
    for name in ("one", "two"):
        (tmp_path / "src" / name).mkdir(parents=True)
        (tmp_path / "src" / name / "__init__.py").write_text("")
    with pytest.raises(ConfigError, match=r"cannot tell the service's package \(under src/: "):
        find_package(tmp_path, None)


@pytest.mark.parametrize(
    "project,where,problem",
    [
        (
            'name = "svc"\ndynamic = ["version"]\n',
            "pyproject.toml version",
            "the pipeline cannot tell where this project's version comes from",
        ),
        (
            'name = "svc"\nversion = "1.0.0+local"\n',
            "pyproject.toml [project].version",
            "must be a version without a local label (got '1.0.0+local')",
        ),
    ],
)
def test_version_that_cannot_be_stamped_is_refused(tmp_path: Path, project, where, problem):
    from prefect_delivery.tasks.stamp import stamp_version

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[project]\n" + project)
    with pytest.raises(ConfigError) as info:
        stamp_version(tmp_path, "a" * 40, str(tmp_path), None)
    message = str(info.value)
    assert where in message and problem in message
    assert pyproject.read_text() == "[project]\n" + project  # nothing was rewritten
