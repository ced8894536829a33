"""``check(path)``: phase plan + lint + round trip (+ compat) on an ephemeral PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect_delivery.migrations_lab.apply import Runner
from prefect_delivery.migrations_lab.baseline import Scope, scope
from prefect_delivery.migrations_lab.compat import CompatConfig, CompatResult, plan_jobs, run_suite
from prefect_delivery.migrations_lab.connect import TimeoutSettings
from prefect_delivery.migrations_lab.errors import LabConfigError, LabError
from prefect_delivery.migrations_lab.findings import Finding
from prefect_delivery.migrations_lab.lint import lint_project
from prefect_delivery.migrations_lab.phases import PhasePlan, read_plan
from prefect_delivery.migrations_lab.postgres import PostgresCluster, Provider, make_cluster
from prefect_delivery.migrations_lab.project import AlembicProject
from prefect_delivery.migrations_lab.report import LabReport, RevisionReport
from prefect_delivery.migrations_lab.roundtrip import RoundTrip, round_trip
from prefect_delivery.migrations_lab.seed import SeedHook, load_project_seed
from prefect_delivery.migrations_lab.settings import LabSettings, load_settings, resolve_python
from prefect_delivery.migrations_lab.suggest import suggest_phase


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
    baseline: str | None = None,
    since: str | None = None,
    python: str | None = None,
    url_env: list[str] | None = None,
    base_schema: str | None = None,
    baseline_schema: str | None = None,
    timings: dict[str, float] | None = None,
) -> LabReport:
    """Rehearse an Alembic project (a folder with alembic.ini, or the ini file).

    ``cluster``: an already started cluster to use (e.g. one per test session); otherwise a
    fresh one from ``provider`` is started and torn down. ``baseline`` / ``since`` / ``python``
    / ``url_env`` / ``base_schema`` override the project's lab settings (see
    :mod:`migrations_lab.settings`). ``timings``, when given, receives the seconds spent in
    ``plan+lint``, ``cluster start`` and ``round trips``. Raises ``LabConfigError`` (bad
    project, bad setting, no PostgreSQL) or ``PostgresStartError``; everything the lab *finds*
    is in the returned report.
    """
    started = time.monotonic()
    clock = timings if timings is not None else {}
    probe = AlembicProject(path)
    settings = load_settings(probe.ini_path, baseline=baseline, python=python,
                             url_env=url_env, base_schema=base_schema,
                             baseline_schema=baseline_schema)
    interpreter = (resolve_python(settings.python, settings.source("python"))
                   if settings.python else None)
    project = AlembicProject(path, python=interpreter, url_env=settings.url_env,
                             url_driver=settings.url_driver)
    try:
        return _check(project, settings, started, clock, provider=provider,
                      provider_options=provider_options, cluster=cluster, compat=compat,
                      seed=seed, timeouts=timeouts, roundtrip=roundtrip, since=since)
    finally:
        project.close()


def _check(project: AlembicProject, settings: LabSettings, started: float,
           clock: dict[str, float], *, provider: Provider,
           provider_options: dict[str, Any] | None, cluster: PostgresCluster | None,
           compat: CompatConfig | dict[str, list[str]] | None, seed: SeedHook | None,
           timeouts: TimeoutSettings | None, roundtrip: bool, since: str | None) -> LabReport:
    plan = read_plan(project)
    used_provider = cluster.kind if cluster is not None else provider
    report = LabReport(project=str(project.ini_path), provider=used_provider,
                       python=project.python)
    if not plan.linear:
        _fill(report, plan, Scope())
        report.notes.append("lint, round trip and compat skipped: the history is not one line")
        report.seconds = round(time.monotonic() - started, 2)
        return report
    sc = scope(plan, baseline=settings.baseline, baseline_where=settings.source("baseline"),
               since=since)
    report.baseline, report.since = sc.baseline, sc.since
    per_rev = _fill(report, plan, sc)

    judged = {rev for rev in per_rev if sc.full(rev)}
    sqls: dict[str, str] = {}
    for rev, findings in lint_project(project, plan, only=judged, sql_out=sqls).items():
        per_rev[rev].findings.extend(findings)
        per_rev[rev].linted = True
    clock["plan+lint"] = round(time.monotonic() - started, 3)
    project.restart()

    config = CompatConfig(commands=compat) if isinstance(compat, dict) else compat
    schema_sql = _read_sql(settings, "base_schema")
    start_sql = _read_sql(settings, "baseline_schema")
    start = (sc.baseline, start_sql) if start_sql and sc.baseline else None
    if roundtrip or config:
        hook = seed or load_project_seed(project)
        t0 = time.monotonic()
        with _cluster(cluster, provider, provider_options or {}) as pg:
            clock["cluster start"] = round(time.monotonic() - t0, 3)
            t1 = time.monotonic()
            if roundtrip:
                with pg.database() as db:
                    results = round_trip(project, plan, db.url, seed=hook, timeouts=timeouts,
                                         project_findings=report.findings,
                                         upgrade_only=set(sc.upgraded), base_schema=schema_sql,
                                         start=start)
                for rev, rt in results.items():
                    per_rev[rev].roundtrip = rt
                    per_rev[rev].findings.extend(_judge_roundtrip(rt, sc.of(rev)))
            clock["round trips"] = round(time.monotonic() - t1, 3)
            if config:
                report.compat = _compat(project, plan, pg, config, timeouts, report.findings)
    for rev, r in per_rev.items():  # revisions that cannot render offline: what they ran
        if rev not in sqls and r.roundtrip is not None and r.roundtrip.upgrade_sql:
            sqls[rev] = ";\n".join(r.roundtrip.upgrade_sql) + ";"
    _suggest(per_rev, sqls)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _fill(report: LabReport, plan: PhasePlan, sc: Scope) -> dict[str, RevisionReport]:
    per_rev = {
        info.revision: RevisionReport(
            revision=info.revision, down_revision=info.down_revision, path=info.path,
            phase=info.phase, release=info.release, judged=sc.of(info.revision),
        )
        for info in plan.revisions
    }
    report.revisions = list(per_rev.values())
    for f in plan.findings:
        if f.revision in per_rev and not sc.full(f.revision) and f.rule not in _STRUCTURAL:
            per_rev[f.revision].unjudged += 1
            continue
        (per_rev[f.revision].findings if f.revision in per_rev else report.findings).append(f)
    return per_rev


_STRUCTURAL = {"multiple-heads", "non-linear-history"}


def _judge_roundtrip(rt: RoundTrip, judged: str) -> list[Finding]:
    """History's round-trip findings are shown as warnings (a released revision cannot be
    rewritten; the lab still says what it does); a judged revision the round trip never
    reached is an error (nothing vouches for it)."""
    if judged == "history":
        for f in rt.findings:
            if f.severity == "error":
                f.severity = "warning"
                f.message = f"[history] {f.message}"
        return rt.findings
    if judged == "full" and rt.status == "skipped":
        return [*rt.findings, Finding(
            check="roundtrip", rule="not-reached", revision=rt.revision,
            message=f"revision {rt.revision} was not round-tripped: "
                    + "; ".join(rt.notes),
            fix="fix the earlier revision the database could not be upgraded through (or, "
                "for a history that cannot be replayed, start later: `base_schema` with the "
                "schema at the baseline)",
        )]
    return rt.findings


def _suggest(per_rev: dict[str, RevisionReport], sqls: dict[str, str]) -> None:
    """A suggested phase (and the line to add) for every judged revision without one."""
    for rev, r in per_rev.items():
        if r.phase is not None or rev not in sqls:
            continue
        suggestion = suggest_phase(sqls[rev])
        if not r.linted or any(f.rule == "offline-render-failed" for f in r.findings):
            suggestion.source = "the SQL it ran on the ephemeral database (none offline)"
        r.suggested_phase = suggestion.phase
        r.suggestion = suggestion.text(r.path)
        for f in r.findings:
            if f.rule == "missing-phase":
                f.fix = suggestion.text(r.path)


def _read_sql(settings: LabSettings, key: str) -> str | None:
    value = getattr(settings, key)
    if not value:
        return None
    p = Path(value)
    try:
        return p.read_text()
    except OSError as exc:
        raise LabConfigError(settings.source(key), f"{p} cannot be read ({exc.strerror}).",
                             "name an SQL file that exists") from None


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
                with Runner(project, db.url, timeouts=timeouts, ephemeral=True) as runner:
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
