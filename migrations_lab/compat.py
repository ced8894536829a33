"""Compatibility: run a release's test suite against a database at another release's revision.

Two directions, per release R with previous release P (releases in shipping order):

- ``old-code-new-schema``: P's suite against the database at R's last revision. Always:
  during R's deploy (and after a rollback of R's code) P's code runs on R's schema.
- ``new-code-old-schema``: R's suite against the database at P's last revision, when every
  revision of R is an expand: expand releases ship schema ahead of the code that uses it, so
  the new code must not need it yet.

A suite is a command (list of str, no shell). The database URL reaches it only through the
``DATABASE_URL`` environment variable, never on the command line; the output tail is
returned with the password scrubbed.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.phases import PhasePlan
from prefect_delivery.migrations_lab.urls import UrlLike, password_of, reveal, scrub

Direction = Literal["old-code-new-schema", "new-code-old-schema"]


class SuiteResult(BaseModel):
    passed: bool
    returncode: int | None
    output_tail: str
    seconds: float
    timed_out: bool = False


class CompatConfig(BaseModel):
    """Suites per release, e.g. ``{"1": ["pytest", "-q", "tests/db"], "2": [...]}``."""

    commands: dict[str, list[str]]
    cwd: str | None = None
    timeout_s: float = Field(default=600.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict)
    tail_lines: int = Field(default=40, ge=1)

    @field_validator("commands")
    @classmethod
    def _non_empty(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for release, cmd in value.items():
            if not cmd or not all(isinstance(a, str) and a for a in cmd):
                raise ValueError(f"release {release!r}: the command must be a non-empty list "
                                 "of non-empty strings")
        return value


class CompatJob(BaseModel):
    suite_release: str
    schema_release: str
    revision: str | None
    direction: Direction
    command: list[str]


class CompatResult(CompatJob):
    passed: bool
    returncode: int | None
    output_tail: str
    seconds: float


def run_suite(
    command: list[str],
    database_url: UrlLike,
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout_s: float = 600.0,
    env: dict[str, str] | None = None,
    tail_lines: int = 40,
) -> SuiteResult:
    """Run ``command`` with ``DATABASE_URL`` set; pass/fail with the output tail."""
    if not command:
        raise LabConfigError("compat command", "is empty.", "give the suite as a list of str")
    pw = password_of(database_url)
    if pw and any(pw in arg for arg in command):
        raise LabConfigError(
            "compat command", "contains the database password.",
            "the lab passes the URL as DATABASE_URL; take it from the environment",
        )
    url_text = reveal(database_url).render_as_string(hide_password=False)
    child_env = {**os.environ, **(env or {}), "DATABASE_URL": url_text}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command, cwd=Path(cwd) if cwd else None, env=child_env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", timeout=timeout_s,
        )
    except FileNotFoundError:
        raise LabConfigError(
            f"compat command {command[0]!r}", "was not found.", "check the command and PATH"
        ) from None
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(
            errors="replace")
        return SuiteResult(
            passed=False, returncode=None, timed_out=True, seconds=round(timeout_s, 3),
            output_tail=_tail(scrub(out, database_url), tail_lines)
            + f"\n[timed out after {timeout_s:.0f}s]",
        )
    return SuiteResult(
        passed=proc.returncode == 0,
        returncode=proc.returncode,
        output_tail=_tail(scrub(proc.stdout or "", database_url), tail_lines),
        seconds=round(time.monotonic() - started, 3),
    )


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def plan_jobs(plan: PhasePlan, config: CompatConfig) -> list[CompatJob]:
    """Which suite runs against which revision (see module docstring)."""
    jobs: list[CompatJob] = []
    releases = plan.releases()
    for (prev, prev_revs), (rel, revs) in zip(releases, releases[1:], strict=False):
        if prev in config.commands:
            jobs.append(CompatJob(
                suite_release=prev, schema_release=rel, revision=revs[-1].revision,
                direction="old-code-new-schema", command=config.commands[prev],
            ))
        if rel in config.commands and all(r.phase == "expand" for r in revs):
            jobs.append(CompatJob(
                suite_release=rel, schema_release=prev, revision=prev_revs[-1].revision,
                direction="new-code-old-schema", command=config.commands[rel],
            ))
    return jobs
