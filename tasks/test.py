"""Test stage: the service's suite, split into shards that run in parallel as mapped tasks.

Each shard is a pytest process over the commit's tests against the built artifact (not the
source tree), writing JUnit XML: for a bundle, in a virtualenv made from it, with exactly the
locked versions instances run plus the test requirements the build locked beside them (an image
installs that same bundle); for a release built before bundles, the tool's interpreter with its
wheel unpacked on PYTHONPATH. The results are merged into one report; any failure stops the
pipeline before anything is deployed. A failing test is a verdict: never retried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from prefect import task
from pydantic import BaseModel

from prefect_delivery.blocks.artifacts import checked_bundle, checked_wheel, unpack_wheel
from prefect_delivery.blocks.errors import ConfigError, GateFailed, InfrastructureError, quoted
from prefect_delivery.blocks.paths import atomic_write_text, service_env
from prefect_delivery.blocks.release import Release
from prefect_delivery.blocks.targets.venv import is_venv, prepare_venv, venv_python
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
    collected: list[str] = []  # every test the shard collected, before the split
    selected: list[str] = []  # the shard's share
    executed: dict[str, str] = {}  # what it ran: nodeid -> outcome


class SuiteReport(BaseModel):
    shards: int
    passed: int
    failed: int
    errors: int
    skipped: int
    wall_s: float
    slowest: list[CaseResult]
    failures: list[CaseResult]
    collected: int = 0
    not_run: list[str] = []  # collected but run by no shard (or by more than one)

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


def coverage_problems(results: list[ShardResult]) -> tuple[int, list[str]]:
    """(tests collected, what went wrong with the split): every shard must have collected the
    same tests, their shares must cover the collection exactly once, and each shard must have
    run its whole share (pure)."""
    if not results:
        return 0, ["no shard ran"]
    collections = {tuple(r.collected) for r in results}
    problems = []
    if len(collections) > 1:
        problems.append("the shards collected different tests (the split is not the same)")
    collected = set(results[0].collected)
    shares: dict[str, int] = {}
    for result in results:
        for nodeid in result.selected:
            shares[nodeid] = shares.get(nodeid, 0) + 1
        missing = [n for n in result.selected if n not in result.executed]
        if missing:
            problems.append(
                f"shard {result.index} did not run {len(missing)} of its tests: "
                + ", ".join(missing[:5])
            )
    unassigned = sorted(collected - set(shares))
    if unassigned:
        problems.append(
            f"{len(unassigned)} collected test(s) went to no shard: " + ", ".join(unassigned[:5])
        )
    twice = sorted(n for n, times in shares.items() if times > 1)
    if twice:
        problems.append(f"{len(twice)} test(s) went to two shards: " + ", ".join(twice[:5]))
    return len(collected), problems


def merge(results: list[ShardResult], wall_s: float, slowest: int = 5) -> SuiteReport:
    """One report from all shards: counts, the slowest tests, the failures, the coverage."""
    cases = [case for result in results for case in result.cases]
    count = {o: sum(1 for c in cases if c.outcome == o) for o in ("passed", "failed", "error")}
    collected, problems = coverage_problems(results)
    return SuiteReport(
        collected=collected,
        not_run=problems,
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
    """Check the tests exist and make what they run against: the release's test virtualenv
    (a bundle), else the unpacked wheel; returns its folder."""
    missing = [p for p in paths if not (source_dir / p).exists()]
    if missing:
        raise ConfigError(
            f"{release.service} [test].paths",
            f"{missing} not found in the service at {release.commit[:10]}; a service without "
            "tests cannot be delivered.",
            "add tests (pytest), or point [test].paths at them in delivery.toml.",
        )
    if release.artifact.kind == "bundle" or release.artifact.bundle_uri:
        bundle, wheels = checked_bundle(release, with_tests=True)
        return prepare_venv(bundle, wheels, source_dir.parent / "test-venv", with_tests=True)
    return unpack_wheel(checked_wheel(release), source_dir.parent / "artifact")


@task(name="test-shard", task_run_name="test shard {index}", **INFRA_RETRIES)
def run_shard(
    source_dir: str,
    artifact_dir: str,
    paths: list[str],
    index: int,
    count: int,
    timeout_s: float,
    durations: dict[str, float] | None = None,
    extra_args: list[str] | None = None,
) -> ShardResult:
    """One pytest process over this shard's share; test failures are returned, not raised.
    ``artifact_dir`` is what prepare_test_tree made: a virtualenv, or a folder for PYTHONPATH.
    ``durations`` is the snapshot every shard of the run got (``durations_snapshot``): each
    shard reading a shared file itself would split by whatever the file held at its start, and
    a delivery that rewrote it in between gave two shards two splits (tests run twice, others
    never)."""
    junit = Path(source_dir).parent / "junit" / f"shard-{index}-of-{count}.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    report_file = junit.with_suffix(".shard.json")
    report_file.unlink(missing_ok=True)
    in_venv = is_venv(Path(artifact_dir))
    argv = [
        str(venv_python(Path(artifact_dir))) if in_venv else sys.executable,
        "-m",
        "pytest",
        "-p",
        "delivery_shard",
        "-p",
        "no:cacheprovider",
        f"--shard-index={index}",
        f"--shard-count={count}",
        f"--junitxml={junit}",
        f"--shard-report={report_file}",
        "-o",
        "junit_family=xunit1",
        "-q",
        *(extra_args or []),
        *paths,
    ]
    durations_file = None
    if durations:  # a file of this shard's own: not even another run's shard of this commit
        handle, durations_file = tempfile.mkstemp(suffix=".durations.json", dir=junit.parent)
        with os.fdopen(handle, "w") as out:
            json.dump(durations, out)
        argv.insert(-len(paths), f"--shard-durations={durations_file}")
    # the service's tests get nothing of the worker's environment (its Prefect API key, say)
    # but PATH, locale, HOME and TMPDIR, as its instances do
    env = service_env()
    env.update(
        PYTHONPATH=os.pathsep.join(
            [str(PLUGIN_DIR)] if in_venv else [artifact_dir, str(PLUGIN_DIR)]
        ),
        PYTHONDONTWRITEBYTECODE="1",
    )
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, cwd=source_dir, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise GateFailed("tests", f"shard {index} ran longer than {timeout_s:.0f}s") from None
    finally:
        if durations_file:
            Path(durations_file).unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    tail = quoted("\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:]))
    # 0 all passed, 1 some failed, 5 nothing collected in this shard: all are results. 2 is a
    # collection error (a test module that does not import): bad code, a verdict.
    if proc.returncode == 2:
        raise GateFailed(
            "tests",
            f"shard {index}: the test suite could not be collected (pytest exit 2):\n{tail}",
        )
    if proc.returncode not in (0, 1, 5) or (proc.returncode != 5 and not junit.exists()):
        raise InfrastructureError(
            f"pytest shard {index} could not run (exit {proc.returncode}):\n{tail}"
        )
    cases = parse_junit(junit) if junit.exists() else []
    try:
        shard = json.loads(report_file.read_text())
    except (OSError, ValueError):
        raise InfrastructureError(
            f"pytest shard {index} left no shard report (the delivery_shard plugin did not "
            f"run):\n{tail}"
        ) from None
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
        collected=shard.get("collected", []),
        selected=shard.get("selected", []),
        executed=shard.get("executed", {}),
    )


def durations_snapshot(path: Path) -> dict[str, float] | None:
    """The durations an earlier run recorded (None if none, or unreadable), read once for all
    the shards of a run."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def record_durations(report_cases: list[CaseResult], path: Path) -> None:
    """Keep each test's duration for the next run's balanced split (written atomically: a
    delivery reading it while another writes sees the old file or the new one)."""
    atomic_write_text(path, json.dumps({c.nodeid: round(c.seconds, 4) for c in report_cases}))


def gate(report: SuiteReport) -> None:
    """Stop the pipeline on any failure, or on a suite that ran nothing."""
    if report.total == 0 or report.passed == 0:
        raise GateFailed("tests", "the test suite collected no tests; nothing proves the release")
    if report.not_run:
        raise GateFailed(
            "tests",
            f"the shards did not run exactly the {report.collected} collected test(s): "
            + "; ".join(report.not_run),
        )
    if not report.ok:
        names = ", ".join(f.nodeid for f in report.failures[:5])
        raise GateFailed("tests", f"{report.failed + report.errors} test(s) failed: {names}")
