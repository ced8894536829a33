"""Round trip: for every revision, on a seeded database,
seed -> snapshot P -> upgrade -> snapshot A -> downgrade -> snapshot B -> upgrade -> snapshot C.

Promises checked (every phase; the message says what the phase promised):

- B == P, schema and data: the downgrade puts back what was there. For a contract this means
  the dropped column/table is restored *and refilled* from the data that superseded it.
  One tolerance: a migrate's downgrade may leave backfilled values in the columns its
  ``replaces`` names as new (NULL before -> value after); that is reported as a note.
- C == A, schema and data: upgrading again gives the same result.

A lossy downgrade is a finding naming the table, the column and what differs. A failing
step is a finding with the error and the revision the database was left at; when an upgrade
fails the later revisions are not reached.

History that starts from a dump (``baseline_schema``: production's schema at the baseline) is
round-tripped the other way, from the top: for each revision from the baseline down,
snapshot S -> downgrade -> snapshot D -> upgrade (== S?) -> downgrade (== D?), which is what
rolling production back through its history would run. Schema only (a dump holds no rows);
a downgrade that fails stops the descent (the revisions below are not reached). The dump is
loaded again afterwards, so the revisions after the baseline start from production's schema.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection

from prefect_delivery.migrations_lab.apply import (
    ENV_IGNORES_CONNECTION,
    UNDRIVABLE,
    RetryPolicy,
    Runner,
)
from prefect_delivery.migrations_lab.connect import TimeoutSettings, connect
from prefect_delivery.migrations_lab.errors import LabConfigError, LabError
from prefect_delivery.migrations_lab.findings import Finding
from prefect_delivery.migrations_lab.phases import PhasePlan, RevisionInfo, targets
from prefect_delivery.migrations_lab.project import AlembicProject
from prefect_delivery.migrations_lab.seed import SeedHook, default_seed
from prefect_delivery.migrations_lab.snapshot import (
    Difference,
    Snapshot,
    diff_data,
    diff_schema,
    take,
)
from prefect_delivery.migrations_lab.urls import UrlLike

Status = Literal["passed", "failed", "skipped", "upgraded"]


class Step(BaseModel):
    name: str
    ok: bool
    seconds: float
    detail: str | None = None


class RoundTrip(BaseModel):
    revision: str
    status: Status = "passed"
    steps: list[Step] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    #: what the first upgrade ran on the database (for a suggested phase when the revision
    #: cannot render offline)
    upgrade_sql: list[str] = Field(default_factory=list)


_PROMISE = {
    "expand": "expand is fully reversible",
    "migrate": "migrate is fully reversible",
    "contract": "a contract's downgrade must restore what it dropped and refill it from the "
                "data that superseded it",
    None: "a downgrade must restore the previous state",
}


def round_trip(
    project: AlembicProject,
    plan: PhasePlan,
    url: UrlLike,
    *,
    seed: SeedHook | None = None,
    timeouts: TimeoutSettings | None = None,
    retry: RetryPolicy | None = None,
    version_table: str = "alembic_version",
    project_findings: list[Finding] | None = None,
    upgrade_only: set[str] | frozenset[str] = frozenset(),
    base_schema: str | None = None,
    start: tuple[str, str] | None = None,
    runner_options: dict[str, object] | None = None,
) -> dict[str, RoundTrip]:
    """Round-trip every revision of a linear plan on the (empty) database at ``url``.

    Revisions in ``upgrade_only`` (``--since``) are upgraded on the way, not round-tripped.
    ``base_schema``: SQL run on the empty database first (the schema the first revision
    expects). ``start``: (revision, SQL): the database starts from that schema stamped at that
    revision; the revisions up to it are not replayed. Findings about the project as a whole
    (e.g. an env.py that ignores the lab's connection) go to ``project_findings`` if given."""
    results: dict[str, RoundTrip] = {}
    pairs = plan.replaced_pairs()
    options = {"ephemeral": True, **(runner_options or {})}
    with Runner(project, url, timeouts=timeouts, retry=retry or RetryPolicy(attempts=1),
                version_table=version_table, **options) as runner:  # type: ignore[arg-type]
        blocked: str | None = None
        if base_schema:
            _base_schema(runner, url, base_schema)
        skip: set[str] = set()
        if start is not None:
            skip = _start_at(runner, url, plan, start, version_table)
            results.update(_descend(runner, url, plan, skip, version_table))
            _restart_at(runner, url, plan, start, version_table)
        for info in plan.revisions:
            if info.revision in skip:
                continue
            if blocked:
                results[info.revision] = RoundTrip(
                    revision=info.revision, status="skipped",
                    notes=[f"not reached: revision {blocked} could not be upgraded"],
                )
                continue
            if info.revision in upgrade_only:
                rt = _upgrade_only(runner, info)
            else:
                rt = _one(runner, info, url, seed, pairs, version_table)
            results[info.revision] = rt
            if rt.status == "failed" and runner.current() != info.revision:
                # going back (or up again) failed, or the upgrade failed on the seeded rows
                # (a NOT NULL column without a default on a table that has rows): rebuild the
                # database up to this revision without rows, so the later revisions are
                # still judged; an upgrade that fails on the empty schema too blocks them
                # (and so does an env.py the lab cannot drive: nothing to rebuild with)
                if not any(UNDRIVABLE in f.message for f in rt.findings):
                    _rebuild(runner, url, plan, info.revision, base_schema, rt, start,
                             version_table)
                if runner.current() != info.revision:
                    blocked = info.revision
        if runner.env_ignores_connection and project_findings is not None:
            project_findings.append(Finding(
                check="roundtrip", rule="env-ignores-connection", severity="warning",
                message=ENV_IGNORES_CONNECTION.split(" Fix: ")[0],
                fix=ENV_IGNORES_CONNECTION.split(" Fix: ")[1],
            ))
    return results


def _rebuild(runner: Runner, url: UrlLike, plan: PhasePlan, revision: str,
             base_schema: str | None, rt: RoundTrip, start: tuple[str, str] | None,
             version_table: str) -> None:
    """Empty the database and upgrade it from base to ``revision`` (no seed data)."""
    _empty(runner, url)
    if base_schema:
        _base_schema(runner, url, base_schema)
    skip = _start_at(runner, url, plan, start, version_table) if start else set()
    try:
        for info in plan.revisions:
            if info.revision in skip:
                continue
            runner.step(info.revision, "upgrade")
            if info.revision == revision:
                break
    except LabError as exc:
        rt.notes.append(f"rebuilding the database up to {revision} failed: {exc.problem}")
        return
    rt.notes.append(f"the database was rebuilt from base up to {revision} (without seed "
                    "data) so the later revisions are still round-tripped")


def _descend(runner: Runner, url: UrlLike, plan: PhasePlan, history: set[str],
             version_table: str) -> dict[str, RoundTrip]:
    """Round-trip the history from the baseline down (the database is at the baseline)."""
    results: dict[str, RoundTrip] = {}
    down = [info for info in reversed(plan.revisions) if info.revision in history]
    blocked: str | None = None
    for info in down:
        if blocked:
            results[info.revision] = RoundTrip(
                revision=info.revision, status="skipped",
                notes=[f"not reached: revision {blocked} could not be downgraded on the way "
                       "down from baseline_schema"],
            )
            continue
        rt = _one_down(runner, info, url, version_table)
        results[info.revision] = rt
        if runner.current() != info.down_revision:  # a downgrade failed: no way further down
            blocked = info.revision
    return results


def _one_down(runner: Runner, info: RevisionInfo, url: UrlLike,
              version_table: str) -> RoundTrip:
    rt = RoundTrip(revision=info.revision, notes=[
        "round-tripped from baseline_schema down: downgrade, upgrade, downgrade (schema only: "
        "the dump holds no rows)"])

    def snap() -> Snapshot:
        return _snapshot(runner, url, version_table)

    def step(name: str, direction: Literal["upgrade", "downgrade"], rule: str) -> bool:
        if _attempt(rt, info, name, lambda: runner.step(info.revision, direction), rule):
            return True
        if direction == "downgrade":
            rt.findings[-1].message += f" ({_PROMISE[info.phase]}.)"
        return False

    at = snap()
    if not step("downgrade", "downgrade", "downgrade-failed"):
        return rt
    below = snap()
    if not step("upgrade", "upgrade", "upgrade-failed"):
        return rt
    rt.upgrade_sql = list(runner.last_statements)
    for d in diff_schema(at, snap()):
        rt.status = "failed"
        rt.findings.append(Finding(
            check="roundtrip", rule="downgrade-schema-differs", revision=info.revision,
            path=info.path, table=d.table, fix="make downgrade() the exact inverse of upgrade()",
            message=(f"revision {info.revision} ({info.path}): downgrading from the baseline's "
                     f"schema and upgrading again does not give that schema back: {d}. "
                     f"{_PROMISE[info.phase]}."),
        ))
    if not step("downgrade again", "downgrade", "downgrade-failed"):
        return rt
    for d in diff_schema(below, snap()):
        rt.status = "failed"
        rt.findings.append(Finding(
            check="roundtrip", rule="reupgrade-schema-differs", revision=info.revision,
            path=info.path, table=d.table,
            fix="make upgrade() and downgrade() give the same result every time",
            message=(f"revision {info.revision} ({info.path}): its second downgrade gives "
                     f"another schema than its first: {d}."),
        ))
    return rt


def _restart_at(runner: Runner, url: UrlLike, plan: PhasePlan, start: tuple[str, str],
                version_table: str) -> None:
    """The database back at exactly the dump, for the revisions after the baseline."""
    _empty(runner, url)
    _start_at(runner, url, plan, start, version_table)


def _start_at(runner: Runner, url: UrlLike, plan: PhasePlan, start: tuple[str, str],
              version_table: str) -> set[str]:
    """Load the schema at ``start[0]`` and stamp that revision; the revisions it covers."""
    revision, sql = start
    _base_schema(runner, url, sql, "baseline_schema")
    with connect(runner.engine, url) as conn:
        conn.exec_driver_sql(f'CREATE TABLE IF NOT EXISTS "{version_table}" '
                             "(version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.exec_driver_sql(f'DELETE FROM "{version_table}"')
        conn.exec_driver_sql(f"INSERT INTO \"{version_table}\" VALUES ('{revision}')")
        conn.commit()
    order = [info.revision for info in plan.revisions]
    return set(order[: order.index(revision) + 1])


def _base_schema(runner: Runner, url: UrlLike, sql: str, setting: str = "base_schema") -> None:
    with connect(runner.engine, url) as conn:
        # psql meta-commands (pg_dump 17's \\restrict) are not SQL
        script = "\n".join(line for line in sql.splitlines() if not line.startswith("\\"))
        try:
            conn.exec_driver_sql(script)
        except Exception as exc:  # the user's SQL: say where it failed
            orig = getattr(exc, "orig", exc)
            raise LabConfigError(
                setting, f"the SQL failed on the empty database: "
                f"{' '.join(str(orig).split())[:300]}",
                f"fix the file named by the {setting} setting (a dump: pg_dump --schema-only "
                "--no-owner --no-privileges)",
            ) from None
        conn.commit()
        conn.exec_driver_sql("RESET search_path")  # pg_dump empties it for its session


def _upgrade_only(runner: Runner, info: RevisionInfo) -> RoundTrip:
    rt = RoundTrip(revision=info.revision, status="upgraded")
    started = time.monotonic()
    try:
        runner.step(info.revision, "upgrade")
    except LabError as exc:
        rt.status = "failed"
        rt.steps.append(Step(name="upgrade", ok=False, seconds=_since(started),
                             detail=f"{exc.where}: {exc.problem}"))
        rt.findings.append(Finding(
            check="roundtrip", rule="upgrade-failed", revision=info.revision, path=info.path,
            message=f"{exc.where}: {exc.problem}", fix=exc.fix,
        ))
        return rt
    rt.steps.append(Step(name="upgrade", ok=True, seconds=_since(started)))
    return rt


def _one(runner: Runner, info: RevisionInfo, url: UrlLike, seed: SeedHook | None,
         pairs: dict[str, str | list[str]], version_table: str) -> RoundTrip:
    rt = RoundTrip(revision=info.revision)

    def snap() -> Snapshot:
        return _snapshot(runner, url, version_table)

    def step(name: str, fn: Callable[[], object], rule: str) -> bool:
        return _attempt(rt, info, name, fn, rule)

    def do_seed() -> None:
        with connect(runner.engine, url) as conn:
            _seed(conn, info.down_revision, seed, pairs, rt)
            conn.commit()

    if not step("seed", do_seed, "seed-failed"):
        return rt
    before = snap()
    if not step("upgrade", lambda: runner.step(info.revision, "upgrade"), "upgrade-failed"):
        return rt
    rt.upgrade_sql = list(runner.last_statements)
    upgraded = snap()
    if not step("downgrade", lambda: runner.step(info.revision, "downgrade"),
                "downgrade-failed"):
        rt.findings[-1].message += f" ({_PROMISE[info.phase]}.)"
        return rt
    downgraded = snap()
    _compare(rt, info, before, downgraded, "downgrade", tolerate=_tolerated(info), pairs=pairs)
    if not step("upgrade again", lambda: runner.step(info.revision, "upgrade"),
                "reupgrade-failed"):
        return rt
    again = snap()
    _compare(rt, info, upgraded, again, "upgrade again", tolerate=set(), pairs=pairs)
    return rt


def _snapshot(runner: Runner, url: UrlLike, version_table: str) -> Snapshot:
    with connect(runner.engine, url) as conn:
        return take(conn, exclude=(version_table,))


def _attempt(rt: RoundTrip, info: RevisionInfo, name: str, fn: Callable[[], object],
             rule: str) -> bool:
    """Run one step of a round trip; a failure is a finding and fails the round trip."""
    started = time.monotonic()
    try:
        fn()
    except LabError as exc:
        text = f"{exc.where}: {exc.problem}"
        rt.steps.append(Step(name=name, ok=False, seconds=_since(started), detail=text))
        rt.findings.append(Finding(
            check="roundtrip", rule=rule, revision=info.revision, path=info.path,
            message=text, fix=exc.fix,
        ))
        rt.status = "failed"
        return False
    rt.steps.append(Step(name=name, ok=True, seconds=_since(started)))
    return True


def _empty(runner: Runner, url: UrlLike) -> None:
    with connect(runner.engine, url) as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
        conn.commit()


def _seed(conn: Connection, revision: str | None, hook: SeedHook | None,
          pairs: dict[str, str | list[str]], rt: RoundTrip) -> None:
    if hook is not None:
        hook(conn, revision)
        return
    report = default_seed(conn, revision, pairs=pairs)
    for table, why in report.skipped.items():
        rt.notes.append(f"seed skipped {table}: {why}")


def _tolerated(info: RevisionInfo) -> set[str]:
    if info.phase != "migrate":
        return set()
    return {item for value in info.replaces.values() for item in targets(value)}


def _compare(rt: RoundTrip, info: RevisionInfo, expected: Snapshot, got: Snapshot,
             after: str, *, tolerate: set[str], pairs: dict[str, str | list[str]]) -> None:
    schema = diff_schema(expected, got)
    data = diff_data(expected, got)
    kept: list[Difference] = []
    for d in data:
        target = f"{d.table}.{d.column}" if d.column else d.table
        if (d.kind == "filled" and (target in tolerate or d.table in tolerate)) or (
            d.kind == "rows-added" and d.table in tolerate
        ):
            rt.notes.append(f"after {after}: {d} (backfilled data kept; allowed for migrate)")
        else:
            kept.append(d)
    if not schema and not kept:
        return
    rt.status = "failed"
    downgrade = after == "downgrade"
    for rule, diffs, label in (
        ("downgrade-schema-differs" if downgrade else "reupgrade-schema-differs", schema,
         "schema"),
        ("lossy-downgrade" if downgrade else "reupgrade-data-differs", kept, "data"),
    ):
        by_table: dict[str, list[Difference]] = {}
        for d in diffs:
            by_table.setdefault(d.table, []).append(d)
        for table, items in by_table.items():
            what = "; ".join(str(d) for d in items)
            if downgrade:
                msg = (f"revision {info.revision} ({info.path}): after downgrade the {label} of "
                       f"{table} differs from before the upgrade: {what}. "
                       f"{_PROMISE[info.phase]}.")
                fix = _fix(info, table, pairs)
            else:
                msg = (f"revision {info.revision} ({info.path}): upgrading again gives another "
                       f"{label} for {table} than the first upgrade: {what}.")
                fix = "make upgrade() produce the same result after a downgrade"
            rt.findings.append(Finding(
                check="roundtrip", rule=rule, revision=info.revision, path=info.path,
                message=msg, table=table, fix=fix,
            ))


def _fix(info: RevisionInfo, table: str, pairs: dict[str, str | list[str]]) -> str:
    if info.phase == "contract":
        sources = [
            f"{item} from "
            f"{' + '.join(targets(pairs[item])) if item in pairs else 'its replacement'}"
            for item in info.drops
            if item.split(".")[0] == table
        ]
        hint = f" ({', '.join(sources)})" if sources else ""
        return ("in downgrade(), re-create what upgrade() dropped with its constraints and "
                f"refill it from the data that superseded it{hint}")
    return "make downgrade() the exact inverse of upgrade()"


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
