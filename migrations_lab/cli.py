"""``lab check PATH [--json] [--provider local|docker] [--since REV] [--baseline REV]
[--python PATH] [--url-env NAME]``.

PATH is an Alembic project's folder, its ``alembic.ini``, or a folder with exactly one
``alembic.ini`` below it (``delivery lab check examples/hello-service``).

Exit status: 0 when the lab passes, 1 when it found problems, 2 when it could not run
(bad path, no PostgreSQL, Docker unreachable).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from prefect_delivery.migrations_lab.compat import CompatConfig
from prefect_delivery.migrations_lab.connect import TimeoutSettings
from prefect_delivery.migrations_lab.errors import LabError
from prefect_delivery.migrations_lab.lab import check
from prefect_delivery.migrations_lab.project import find_alembic_ini
from prefect_delivery.migrations_lab.report import format_report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="Rehearse Alembic migrations on "
                                     "an ephemeral PostgreSQL: phase plan, lint, round trip.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="check an Alembic project (folder or alembic.ini)")
    c.add_argument("path", help="the folder holding alembic.ini, the ini file, or a folder "
                   "with exactly one alembic.ini below it (e.g. a service whose migrations "
                   "live in its package)")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--provider", choices=["local", "docker"], default="local",
                   help="where the ephemeral PostgreSQL runs (default: local binaries)")
    c.add_argument("--image", default=None, help="image for --provider docker "
                   "(default: $MIGRATIONS_LAB_PG_IMAGE, else postgres:16)")
    c.add_argument("--pull", action="store_true",
                   help="with --provider docker: pull the image when it is not present")
    c.add_argument("--compat", action="append", default=[], metavar="RELEASE=COMMAND",
                   help="a release's test suite, e.g. --compat '2=pytest -q tests/db' "
                        "(repeatable; the suite gets DATABASE_URL in its environment)")
    c.add_argument("--compat-cwd", default=None, help="working directory of the suites")
    c.add_argument("--lock-timeout-ms", type=int, default=2000)
    c.add_argument("--statement-timeout-ms", type=int, default=60000)
    c.add_argument("--no-roundtrip", action="store_true", help="plan and lint only (no DB)")
    c.add_argument("--since", default=None, metavar="REV",
                   help="judge only the revisions after REV (they are upgraded to on the way)")
    c.add_argument("--baseline", default=None, metavar="REV",
                   help="revisions up to REV are history: round-tripped, phases and lint not "
                        "judged (default: `baseline` in the lab settings)")
    c.add_argument("--python", default=None, metavar="PATH",
                   help="the release's interpreter or virtualenv: env.py runs there, with the "
                        "release's own dependencies (default: `python` in the lab settings, "
                        "else this interpreter)")
    c.add_argument("--url-env", action="append", default=None, metavar="NAME",
                   help="an environment variable env.py reads the database URL from "
                        "(repeatable; replaces the default list DATABASE_URL, DB_URL, ...)")
    return parser


def _compat(values: list[str], cwd: str | None) -> CompatConfig | None:
    commands: dict[str, list[str]] = {}
    for value in values:
        release, sep, cmd = value.partition("=")
        if not sep or not release.strip() or not cmd.strip():
            raise LabError(f"--compat {value!r}", "is not RELEASE=COMMAND.",
                           "write e.g. --compat '2=pytest -q tests/db'")
        commands[release.strip()] = shlex.split(cmd)
    return CompatConfig(commands=commands, cwd=cwd) if commands else None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM -> SystemExit, so context managers and atexit tear the cluster down
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return _check(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _resolve(path: str) -> str:
    """A folder without alembic.ini of its own: the one Alembic project below it."""
    p = Path(path)
    if p.is_dir() and not (p / "alembic.ini").is_file():
        found = find_alembic_ini(p)
        if found is not None:
            print(f"lab: {path} holds the Alembic project {found}", file=sys.stderr)
            return str(found)
    return path


def _check(args: argparse.Namespace) -> int:
    try:
        args.path = _resolve(args.path)
        options: dict[str, object] = {}
        if args.provider == "docker":
            options = {"pull": args.pull} | ({"image": args.image} if args.image else {})
        report = check(
            args.path,
            provider=args.provider,
            provider_options=options,
            compat=_compat(args.compat, args.compat_cwd),
            timeouts=TimeoutSettings(lock_timeout_ms=args.lock_timeout_ms,
                                     statement_timeout_ms=args.statement_timeout_ms),
            roundtrip=not args.no_roundtrip,
            baseline=args.baseline,
            since=args.since,
            python=args.python,
            url_env=args.url_env,
        )
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    print(report.model_dump_json(indent=2) if args.json else format_report(report))
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
