"""``delivery report``: DORA figures per service and environment, from the ledgers (no Prefect
import)."""

from __future__ import annotations

import argparse
import json

from prefect_delivery.flows.cli.common import EXIT_OK, state_dirs
from prefect_delivery.flows.cli.status import STATE_DIR_HELP


def cmd_report(args: argparse.Namespace) -> int:
    from prefect_delivery.tasks.dora_report import as_json, dora_report, text

    report = dora_report(
        args.env or None,
        state_dirs(args.state_dir),
        args.since,
        args.repo,
        services=args.service or None,
    )
    print(json.dumps(as_json(report), indent=2) if args.json else text(report))
    return EXIT_OK


def days(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days (e.g. 30)") from None
    if not number > 0 or number != number or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: give a number of days greater than 0")
    return number


def add_commands(sub) -> None:
    report = sub.add_parser(
        "report",
        help="DORA figures per service and environment: deployment frequency, lead time, change "
        "failure "
        "rate, time to restore (read from the ledgers)",
    )
    report.add_argument("--env", action="append", help="only this environment (repeatable)")
    report.add_argument("--service", action="append", help="only this service (repeatable)")
    report.add_argument(
        "--since", type=days, default=30.0, metavar="DAYS", help="the last DAYS days (30)"
    )
    report.add_argument("--json", action="store_true")
    report.add_argument(
        "--repo",
        action="append",
        help="git checkout to read commit times from (repeatable; default: the working "
        "directory); a commit no repository knows has no lead time",
    )
    report.add_argument("--state-dir", help=STATE_DIR_HELP)
    report.set_defaults(func=cmd_report)
