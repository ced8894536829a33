"""Test stage: the service's suite, split into shards that run in parallel as mapped tasks.

Each shard is a pytest process over the commit's tests with the built artifact (not the source
tree) on PYTHONPATH, writing JUnit XML. The results are merged into one report; any failure
stops the pipeline before anything is deployed. A failing test is a verdict: never retried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from prefect import task
from pydantic import BaseModel

from prefect_delivery.blocks.artifacts import checked_wheel, unpack_wheel
from prefect_delivery.blocks.errors import ConfigError, GateFailed, InfrastructureError
from prefect_delivery.blocks.release import Release
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.retry import INFRA_RETRIES

PLUGIN_DIR = Path(__file__).parent / "pytest_plugins"


class CaseResult(BaseModel):
    nodeid: str
    outcome: str  # passed, failed, error, skipped
    seconds: float
    message: str = ""


class ShardResult(BaseModel):
    index: int
    count: int
    exit_code: int
    seconds: float
    cases: list[CaseResult]
    output_tail: str = ""


class SuiteReport(BaseModel):
    shards: int
    passed: int
    failed: int
    errors: int
    skipped: int
    wall_s: float
    slowest: list[CaseResult]
    failures: list[CaseResult]

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0 and self.passed > 0

    def summary(self) -> str:
        return (
            f"{self.passed} passed, {self.failed} failed, {self.errors} errors, "
            f"{self.skipped} skipped in {self.shards} shard(s), {self.wall_s:.1f}s"
        )


def parse_junit(path: Path) -> list[CaseResult]:
    """Test cases from a JUnit XML file as pytest writes it."""
    root = ET.parse(path).getroot()
    cases = []
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        name = case.get("name", "")
        file_part = classname.replace(".", "/") + ".py" if classname else ""
        nodeid = f"{file_part}::{name}" if file_part else name
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = (child.get("message") or "")[:500]
                break
        cases.append(
            CaseResult(
                nodeid=nodeid, outcome=outcome, seconds=float(case.get("time", 0)), message=message
            )
        )
    return cases


def merge(results: list[ShardResult], wall_s: float, slowest: int = 5) -> SuiteReport:
    """One report from all shards: counts, the slowest tests, the failures."""
    cases = [case for result in results for case in result.cases]
    count = {o: sum(1 for c in cases if c.outcome == o) for o in ("passed", "failed", "error")}
    return SuiteReport(
        shards=len(results),
        passed=count["passed"],
        failed=count["failed"],
        errors=count["error"],
        skipped=sum(1 for c in cases if c.outcome == "skipped"),
        wall_s=wall_s,
        slowest=sorted(cases, key=lambda c: c.seconds, reverse=True)[:slowest],
        failures=[c for c in cases if c.outcome in ("failed", "error")],
    )


def prepare_test_tree(source_dir: Path, release: Release, paths: list[str]) -> Path:
    """Check the tests exist and unpack the artifact they run against; returns its folder."""
    missing = [p for p in paths if not (source_dir / p).exists()]
    if missing:
        raise ConfigError(
            f"{release.service} [test].paths",
            f"{missing} not found in the service at {release.commit[:10]}; a service without "
            "tests cannot be delivered.",
            "add tests (pytest), or point [test].paths at them in delivery.toml.",
        )
    return unpack_wheel(checked_wheel(release), source_dir.parent / "artifact")


@task(name="test-shard", task_run_name="test shard {index}", **INFRA_RETRIES)
def run_shard(
    source_dir: str,
    artifact_dir: str,
    paths: list[str],
    index: int,
    count: int,
    timeout_s: float,
    durations_file: str | None = None,
    extra_args: list[str] | None = None,
) -> ShardResult:
    """One pytest process over this shard's share; test failures are returned, not raised."""
    junit = Path(source_dir).parent / "junit" / f"shard-{index}-of-{count}.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "delivery_shard",
        "-p",
        "no:cacheprovider",
        f"--shard-index={index}",
        f"--shard-count={count}",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit1",
        "-q",
        *(extra_args or []),
        *paths,
    ]
    if durations_file and Path(durations_file).exists():
        argv.insert(-len(paths), f"--shard-durations={durations_file}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([artifact_dir, str(PLUGIN_DIR)]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, cwd=source_dir, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise GateFailed("tests", f"shard {index} ran longer than {timeout_s:.0f}s") from None
    seconds = time.perf_counter() - started
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
    # 0 all passed, 1 some failed, 5 nothing collected in this shard: all are results.
    if proc.returncode not in (0, 1, 5) or (proc.returncode != 5 and not junit.exists()):
        raise InfrastructureError(
            f"pytest shard {index} could not run (exit {proc.returncode}):\n{tail}"
        )
    cases = parse_junit(junit) if junit.exists() else []
    run_logger().info(
        "Shard %d/%d: %d tests in %.1fs (exit %d)",
        index + 1,
        count,
        len(cases),
        seconds,
        proc.returncode,
    )
    return ShardResult(
        index=index,
        count=count,
        exit_code=proc.returncode,
        seconds=seconds,
        cases=cases,
        output_tail=tail,
    )


def record_durations(report_cases: list[CaseResult], path: Path) -> None:
    """Keep each test's duration for the next run's balanced split."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({c.nodeid: round(c.seconds, 4) for c in report_cases}, indent=0))


def gate(report: SuiteReport) -> None:
    """Stop the pipeline on any failure, or on a suite that ran nothing."""
    if report.total == 0 or report.passed == 0:
        raise GateFailed("tests", "the test suite collected no tests; nothing proves the release")
    if not report.ok:
        names = ", ".join(f.nodeid for f in report.failures[:5])
        raise GateFailed("tests", f"{report.failed + report.errors} test(s) failed: {names}")
