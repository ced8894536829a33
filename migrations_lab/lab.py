"""``check(path)``: phase plan + lint + round trip (+ compat) on an ephemeral PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from prefect_delivery.migrations_lab.apply import Runner
from prefect_delivery.migrations_lab.compat import CompatConfig, CompatResult, plan_jobs, run_suite
from prefect_delivery.migrations_lab.connect import TimeoutSettings
from prefect_delivery.migrations_lab.errors import LabError
from prefect_delivery.migrations_lab.findings import Finding
from prefect_delivery.migrations_lab.lint import lint_project
from prefect_delivery.migrations_lab.phases import read_plan
from prefect_delivery.migrations_lab.postgres import PostgresCluster, Provider, make_cluster
from prefect_delivery.migrations_lab.project import AlembicProject
from prefect_delivery.migrations_lab.report import LabReport, RevisionReport
from prefect_delivery.migrations_lab.roundtrip import round_trip
from prefect_delivery.migrations_lab.seed import SeedHook, load_project_seed


@contextlib.contextmanager
def _cluster(given: PostgresCluster | None, provider: Provider,
             options: dict[str, Any]) -> Iterator[PostgresCluster]:
    if given is not None:
        if not given.running:
            given.start()
        yield given
        return
    with make_cluster(provider, **options) as cluster:
        yield cluster


def check(
    path: str | os.PathLike[str],
    *,
    provider: Provider = "local",
    provider_options: dict[str, Any] | None = None,
    cluster: PostgresCluster | None = None,
    compat: CompatConfig | dict[str, list[str]] | None = None,
    seed: SeedHook | None = None,
    timeouts: TimeoutSettings | None = None,
    roundtrip: bool = True,
) -> LabReport:
    """Rehearse an Alembic project (a folder with alembic.ini, or the ini file).

    ``cluster``: an already started cluster to use (e.g. one per test session); otherwise a
    fresh one from ``provider`` is started and torn down. Raises ``LabConfigError`` (bad
    project, no PostgreSQL) or ``PostgresStartError``; everything the lab *finds* is in the
    returned report.
    """
    started = time.monotonic()
    project = AlembicProject(path)
    plan = read_plan(project)
    used_provider = cluster.kind if cluster is not None else provider
    report = LabReport(project=str(project.ini_path), provider=used_provider)
    per_rev = {
        info.revision: RevisionReport(
            revision=info.revision, down_revision=info.down_revision, path=info.path,
            phase=info.phase, release=info.release,
        )
        for info in plan.revisions
    }
    report.revisions = list(per_rev.values())
    for f in plan.findings:
        (per_rev[f.revision].findings if f.revision in per_rev else report.findings).append(f)
    if not plan.linear:
        report.notes.append("lint, round trip and compat skipped: the history is not one line")
        report.seconds = round(time.monotonic() - started, 2)
        return report

    for rev, findings in lint_project(project, plan).items():
        per_rev[rev].findings.extend(findings)
        per_rev[rev].linted = True

    config = CompatConfig(commands=compat) if isinstance(compat, dict) else compat
    if roundtrip or config:
        hook = seed or load_project_seed(project)
        with _cluster(cluster, provider, provider_options or {}) as pg:
            if roundtrip:
                with pg.database() as db:
                    results = round_trip(project, plan, db.url, seed=hook, timeouts=timeouts,
                                         project_findings=report.findings)
                for rev, rt in results.items():
                    per_rev[rev].roundtrip = rt
                    per_rev[rev].findings.extend(rt.findings)
            if config:
                report.compat = _compat(project, plan, pg, config, timeouts, report.findings)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _compat(project: AlembicProject, plan: Any, pg: PostgresCluster, config: CompatConfig,
            timeouts: TimeoutSettings | None, findings: list[Finding]) -> list[CompatResult]:
    known = {rel for rel, _ in plan.releases()}
    for rel in config.commands:
        if rel not in known:
            findings.append(Finding(
                check="compat", rule="unknown-release", severity="warning",
                message=f"compat command for release {rel!r}, which no revision declares "
                        f"(releases: {', '.join(known)}).",
                fix="key compat commands by the `release` the revisions declare",
            ))
    results: list[CompatResult] = []
    for job in plan_jobs(plan, config):
        with pg.database() as db:
            try:
                with Runner(project, db.url, timeouts=timeouts) as runner:
                    runner.upgrade(job.revision or "base")
            except LabError as exc:
                results.append(CompatResult(
                    **job.model_dump(), passed=False, returncode=None, seconds=0.0,
                    output_tail=f"not run: the database could not reach the revision: {exc}",
                ))
                continue
            res = run_suite(job.command, db.url, cwd=config.cwd, timeout_s=config.timeout_s,
                            env=config.env, tail_lines=config.tail_lines)
        results.append(CompatResult(**job.model_dump(), **res.model_dump(exclude={"timed_out"})))
    return results
