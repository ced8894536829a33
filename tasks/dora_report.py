"""DORA figures of each service in each environment, read from its ledger (no Prefect import
to read them): one service's deliveries never count in another's figures.

``delivery report`` prints :func:`dora_report`; the delivery flow publishes
:func:`publish_dora_artifact` after each delivery. Commit times the ledger does not carry
are asked from git (``git show -s --format=%cI``) in the repositories given, else the working
directory; a commit git does not know leaves its lead time unknown (counted, not guessed).
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from prefect_delivery.blocks.environment_view import EnvironmentView
from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.tasks.dora import DoraFigures, duration, figures, period


def git_commit_times(repos: list[str]):
    """A lookup commit -> commit time, from the first of ``repos`` that knows the commit."""

    @cache
    def lookup(commit: str) -> datetime | None:
        for repo in repos:
            try:
                out = subprocess.run(
                    ["git", "-C", repo, "show", "-s", "--format=%cI", commit, "--"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            if out.returncode == 0 and out.stdout.strip():
                try:
                    return datetime.fromisoformat(out.stdout.strip().splitlines()[0])
                except ValueError:
                    continue
        return None

    return lookup


def dora_report(
    names: list[str] | None,
    state_dirs: list[str],
    days: float = 30.0,
    repos: list[str] | None = None,
    now: datetime | None = None,
    services: list[str] | None = None,
) -> list[DoraFigures]:
    """The figures of each service (all, or ``services``) in each environment (all with a
    snapshot, or ``names``) for the last ``days`` days."""
    try:
        since, until = period(days, now)
    except ValueError as exc:
        raise ConfigError("--since", str(exc), "pass a number of days, e.g. --since 30") from None
    views = {v.name: v for v in EnvironmentView.recall_all(state_dirs)}
    if names:
        missing = [n for n in names if n not in views]
        if missing:
            raise ConfigError(
                f"environment {missing[0]!r}",
                "has no snapshot in the state folders "
                f"({', '.join(state_dirs)}); its ledger cannot be found.",
                "pass --state-dir (or set DELIVERY_STATE_DIR) to the folder `delivery setup` "
                "used; known here: " + (", ".join(sorted(views)) or "none"),
            )
        chosen = [views[n] for n in names]
    else:
        chosen = list(views.values())
    for repo in repos or []:
        if not Path(repo).is_dir():
            raise ConfigError("--repo", f"{repo!r} is not a folder.", "pass a git checkout.")
    lookup = git_commit_times([str(Path(r).resolve()) for r in repos or ["."]])
    scoped = [s for v in chosen for s in v.scoped(services)]
    if services and not scoped:
        raise ConfigError(
            f"--service {', '.join(services)}",
            "no environment here carries it.",
            "check the name with `delivery status`.",
        )
    return [
        figures(v.name, v.ledger().entries(), since, until, lookup, service=v.service)
        for v in scoped
    ]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def text(report: list[DoraFigures]) -> str:
    if not report:
        return "No environments yet. Run `delivery demo` or `delivery setup`."
    lines = []
    for f in report:
        lines += [
            f"{f.environment}/{f.service}: {f.since:%Y-%m-%d %H:%M} .. "
            f"{f.until:%Y-%m-%d %H:%M} UTC ({f.days:g} days)",
            f"  deployment frequency  {f.deployments_per_day:.2f}/day ({f.verified} verified "
            f"of {f.deliveries} deliveries, {f.in_flight} in flight)",
            f"  lead time for changes median {duration(f.lead_time.median_s)}, mean "
            f"{duration(f.lead_time.mean_s)}, max {duration(f.lead_time.max_s)} "
            f"({f.lead_time.count} known"
            + (f", {f.lead_time_unknown} without a commit time" if f.lead_time_unknown else "")
            + ")",
            f"  change failure rate   {_rate(f.change_failure_rate)} ({f.failed} failed or "
            f"rolled back of {f.deliveries - f.in_flight} finished)",
            f"  time to restore       median {duration(f.time_to_restore.median_s)}, max "
            f"{duration(f.time_to_restore.max_s)} ({f.time_to_restore.count} restored"
            + (f", {f.unrestored} not restored" if f.unrestored else "")
            + ")",
        ]
    return "\n".join(lines)


def markdown(report: list[DoraFigures]) -> str:
    """The figures as one markdown table per period (the artifact after each delivery)."""
    if not report:
        return "# DORA figures\n\nNo environments recorded yet.\n"
    head = report[0]
    lines = [
        "# DORA figures",
        "",
        f"Deliveries started {head.since:%Y-%m-%d %H:%M} .. {head.until:%Y-%m-%d %H:%M} UTC, "
        "from the environments' ledgers.",
        "",
        "| environment | service | deployments/day | verified / deliveries | lead time (median) "
        "| change failure rate | time to restore (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in report:
        lines.append(
            f"| {f.environment} | {f.service} | {f.deployments_per_day:.2f} | "
            f"{f.verified} / {f.deliveries} "
            f"| {duration(f.lead_time.median_s)} | {_rate(f.change_failure_rate)} "
            f"({f.failed}) | {duration(f.time_to_restore.median_s)} |"
        )
    recent = sorted((d for f in report for d in f.details), key=lambda d: d.started_at)[-10:]
    if recent:
        lines += [
            "",
            "## Latest deliveries",
            "",
            "| started | environment | release | outcome | lead time | restored in |",
            "|---|---|---|---|---|---|",
        ]
        for d in reversed(recent):
            lines.append(
                f"| {d.started_at:%Y-%m-%d %H:%M:%S} | {d.environment} | {d.service} "
                f"{d.version} `{d.commit[:10]}` | {d.outcome} | {duration(d.lead_time_s)} "
                f"| {duration(d.restore_s)} |"
            )
    return "\n".join(lines) + "\n"


def as_json(report: list[DoraFigures]) -> list[dict]:
    out = []
    for f in report:
        data = f.model_dump(mode="json")
        data["days"] = f.days
        data["details"] = [
            {**d.model_dump(mode="json"), "lead_time_s": d.lead_time_s, "restore_s": d.restore_s}
            for d in f.details
        ]
        out.append(data)
    return out


def publish_dora_artifact(
    state_dirs: list[str],
    names: list[str] | None = None,
    days: float = 30.0,
    repo: str | None = None,
) -> str:
    """A markdown artifact ``dora-figures`` with the figures of the environments recorded in
    ``state_dirs`` (all of them, or ``names``); returns the markdown."""
    from prefect_delivery.tasks.runtime.report import publish_markdown

    body = markdown(
        dora_report(names, state_dirs, days, [repo] if repo else None, datetime.now(UTC))
    )
    publish_markdown(key="dora-figures", markdown=body, description="DORA figures (30 days)")
    return body


def publish_after_delivery(summary, repo: str | None = None) -> str | None:
    """What the delivery flow calls after each delivery (its summary in hand): the figures of
    every environment kept beside the ones this run reached. A record, not a gate: a failure
    to publish is a warning. ``repo``: the service's repository (commit times)."""
    from prefect_delivery.blocks.paths import default_state_dir
    from prefect_delivery.tasks.runtime.log import run_logger

    try:
        dirs = []
        for name in summary.urls:
            from prefect_delivery.blocks.environment import Environment

            folder = Environment.load(name).state_dir
            if folder not in dirs:
                dirs.append(folder)
        return publish_dora_artifact(dirs or [default_state_dir()], repo=repo)
    except Exception as exc:  # noqa: BLE001 - a record, not a gate
        run_logger().warning("could not publish the DORA figures: %s", exc)
        return None
