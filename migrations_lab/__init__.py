"""migrations_lab: rehearse Alembic migrations (expand / migrate / contract) on an ephemeral
PostgreSQL before they touch a real one. Works on any Alembic project; imports nothing from
the rest of prefect-delivery.

Entry points:

- :func:`check` -- phase plan + lint + round trip (+ compat) -> :class:`LabReport`
- :func:`read_plan`, :func:`revision_info` -- each revision's phase, release, drops, replaces
- :func:`apply_pending`, :func:`downgrade`, :func:`current_revision`,
  :func:`pending_revisions` -- safe apply to a real database
- :func:`apply_timeouts` -- for a project's env.py; :func:`batched_backfill` -- for revisions
- :func:`ephemeral_postgres`, :class:`LocalPostgres`, :class:`DockerPostgres` -- throwaway
  PostgreSQL
- :func:`load_settings` -- a project's lab settings (baseline, url_env, python, schemas);
  :func:`suggest_phase` -- the phase a revision's SQL suggests

Adoption (:mod:`.settings`, :mod:`.baseline`, :mod:`.suggest`) and how env.py is driven, in
this interpreter or the release's (:mod:`.envrun`, :mod:`.driver`).
"""

from prefect_delivery.migrations_lab.apply import (
    ApplyResult,
    RetryPolicy,
    Runner,
    StepResult,
    apply_pending,
    current_revision,
    downgrade,
    pending_revisions,
)
from prefect_delivery.migrations_lab.backfill import BackfillResult, batched_backfill
from prefect_delivery.migrations_lab.compat import (
    CompatConfig,
    CompatResult,
    SuiteResult,
    run_suite,
)
from prefect_delivery.migrations_lab.connect import TimeoutSettings, apply_timeouts
from prefect_delivery.migrations_lab.errors import (
    DatabaseUnavailable,
    LabConfigError,
    LabError,
    MigrationFailed,
    PostgresNotFound,
    PostgresStartError,
    VersionMismatch,
)
from prefect_delivery.migrations_lab.findings import Finding
from prefect_delivery.migrations_lab.lab import check
from prefect_delivery.migrations_lab.lint import RULES, lint_sql
from prefect_delivery.migrations_lab.phases import PhasePlan, RevisionInfo, read_plan, revision_info
from prefect_delivery.migrations_lab.postgres import (
    Database,
    LocalPostgres,
    PostgresCluster,
    ephemeral_postgres,
    make_cluster,
)
from prefect_delivery.migrations_lab.project import AlembicProject
from prefect_delivery.migrations_lab.report import LabReport, RevisionReport, format_report
from prefect_delivery.migrations_lab.settings import LabSettings, load_settings
from prefect_delivery.migrations_lab.suggest import Suggestion, suggest_phase


def __getattr__(name: str) -> object:
    if name == "DockerPostgres":  # imported lazily: it pulls in docker-py
        from prefect_delivery.migrations_lab.postgres_docker import DockerPostgres

        return DockerPostgres
    raise AttributeError(name)


__all__ = [
    "RULES",
    "AlembicProject",
    "ApplyResult",
    "BackfillResult",
    "CompatConfig",
    "CompatResult",
    "Database",
    "DatabaseUnavailable",
    "DockerPostgres",
    "Finding",
    "LabConfigError",
    "LabError",
    "LabReport",
    "LabSettings",
    "LocalPostgres",
    "MigrationFailed",
    "PhasePlan",
    "PostgresCluster",
    "PostgresNotFound",
    "PostgresStartError",
    "RetryPolicy",
    "RevisionInfo",
    "RevisionReport",
    "Runner",
    "StepResult",
    "Suggestion",
    "SuiteResult",
    "TimeoutSettings",
    "VersionMismatch",
    "apply_pending",
    "apply_timeouts",
    "batched_backfill",
    "check",
    "current_revision",
    "downgrade",
    "ephemeral_postgres",
    "format_report",
    "lint_sql",
    "load_settings",
    "make_cluster",
    "pending_revisions",
    "read_plan",
    "revision_info",
    "run_suite",
    "suggest_phase",
]
