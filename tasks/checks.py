"""End-to-end checks against the deployed environment: the top of the test pyramid.

The manifest's ``[checks]`` names a suite (pytest, or any command) that runs against an
environment's URL once the release serves there, before the release is recorded as verified:
in staging before anyone is asked to approve it, in production before its bake. A failed check
is a verdict (gate "checks"): the deploy flow puts traffic back on the stable release, as for a
failed verification, and the check's last output (bounded, masked) is in the report.

The suite runs from the commit's tree in the release's test environment (the virtualenv made
from its bundle, with pytest), so a check imports the versions the release runs. It gets the
environment in ``DELIVERY_URL`` (also ``BASE_URL``), ``DELIVERY_ENVIRONMENT`` and
``DELIVERY_COMMIT``, and nothing else of the worker's environment but PATH, locale, HOME and
TMPDIR; a leading ``python`` or ``pytest`` is that environment's.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from prefect import task
from pydantic import BaseModel

from prefect_delivery.blocks.errors import ConfigError, quoted
from prefect_delivery.blocks.paths import service_env
from prefect_delivery.blocks.release import Release
from prefect_delivery.blocks.targets.venv import in_venv, is_venv
from prefect_delivery.tasks.runtime.log import run_logger


class Checks(BaseModel):
    """What to run, and from where (the delivery flow fills it from the manifest)."""

    command: list[str]
    source_dir: str  # the commit's exported tree: the checks' working directory
    timeout_s: float = 300


class ChecksResult(BaseModel):
    command: str
    passed: bool
    exit_code: int
    seconds: float
    output_tail: str = ""

    def line(self) -> str:
        verdict = "passed" if self.passed else f"failed (exit {self.exit_code})"
        return f"`{self.command}` {verdict} in {self.seconds:.1f}s"


def checks_argv(command: list[str], environment_dir: Path) -> list[str]:
    """The command with a leading python or pytest (or a script of the release's test
    environment) taken from that environment."""
    argv = ["python", "-m", "pytest", *command[1:]] if command[0] == "pytest" else list(command)
    if is_venv(environment_dir):
        return in_venv(argv, environment_dir)
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


@task(name="checks", task_run_name="end-to-end checks in {environment}")
def run_checks(environment: str, url: str, release: Release, checks: Checks) -> ChecksResult:
    """Run the suite against ``url``; a failure is returned (the caller decides), never
    retried: a check that fails against a live environment is a verdict on the release."""
    from prefect_delivery.tasks.test import prepare_test_tree

    environment_dir = prepare_test_tree(Path(checks.source_dir), release, [])
    argv = checks_argv(checks.command, environment_dir)
    # the service's code gets what it needs and nothing of the worker's (its Prefect API key,
    # the blocks' secrets): the same short list of variables the process target gives instances
    env = service_env()
    env.update(
        DELIVERY_URL=url,
        BASE_URL=url,
        DELIVERY_ENVIRONMENT=environment,
        DELIVERY_COMMIT=release.commit,
        PYTHONDONTWRITEBYTECODE="1",
    )
    if not is_venv(environment_dir):  # a release built before bundles: its wheel, unpacked
        env["PYTHONPATH"] = str(environment_dir)
    shown = " ".join(checks.command)
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            argv,
            cwd=checks.source_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=checks.timeout_s,
        )
    except FileNotFoundError:
        raise ConfigError(
            f"{release.service} delivery.toml [checks].command",
            f"{checks.command[0]!r} was not found (in the release's test environment or on PATH).",
            "name pytest, python, a script the service's test requirements install, or a "
            "command on the worker's PATH.",
        ) from None
    except subprocess.TimeoutExpired:
        return ChecksResult(
            command=shown,
            passed=False,
            exit_code=-1,
            seconds=time.perf_counter() - started,
            output_tail=f"ran longer than {checks.timeout_s:.0f}s",
        )
    tail = quoted("\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:]))
    result = ChecksResult(
        command=shown,
        passed=proc.returncode == 0,
        exit_code=proc.returncode,
        seconds=time.perf_counter() - started,
        output_tail=tail,
    )
    run_logger().info("End-to-end checks in %s: %s", environment, result.line())
    return result
