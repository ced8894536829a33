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

import importlib

#: Each public name and the module it lives in. Imported on first use (PEP 562), so a
#: module that needs one part (the deploy flow needs the phase plan) does not load the lab,
#: Alembic, psycopg and the rest with it: about 0.26 s of every `delivery` process's start.
_EXPORTS = {
    "AlembicProject": "project",
    "apply_pending": "apply",
    "apply_timeouts": "connect",
    "ApplyResult": "apply",
    "BackfillResult": "backfill",
    "batched_backfill": "backfill",
    "check": "lab",
    "CompatConfig": "compat",
    "CompatResult": "compat",
    "current_revision": "apply",
    "Database": "postgres",
    "DatabaseUnavailable": "errors",
    "DockerPostgres": "postgres_docker",
    "downgrade": "apply",
    "ephemeral_postgres": "postgres",
    "Finding": "findings",
    "format_report": "report",
    "LabConfigError": "errors",
    "LabError": "errors",
    "LabReport": "report",
    "LabSettings": "settings",
    "lint_sql": "lint",
    "load_settings": "settings",
    "LocalPostgres": "postgres",
    "make_cluster": "postgres",
    "MigrationFailed": "errors",
    "pending_revisions": "apply",
    "PhasePlan": "phases",
    "PostgresCluster": "postgres",
    "PostgresNotFound": "errors",
    "PostgresStartError": "errors",
    "read_plan": "phases",
    "RetryPolicy": "apply",
    "revision_info": "phases",
    "RevisionInfo": "phases",
    "RevisionReport": "report",
    "RULES": "lint",
    "run_suite": "compat",
    "Runner": "apply",
    "StepResult": "apply",
    "suggest_phase": "suggest",
    "Suggestion": "suggest",
    "SuiteResult": "compat",
    "TimeoutSettings": "connect",
    "VersionMismatch": "errors",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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
