"""``delivery lab ...``: migrations_lab's own command line (PATH may be a service folder: the
one alembic.ini below it is used)."""

from __future__ import annotations

import argparse

from prefect_delivery.flows.cli.common import EXIT_BAD_INPUT


def cmd_lab(args: argparse.Namespace) -> int:
    """``delivery lab check PATH ...``: migrations_lab's own command line (PATH may be a
    service folder: the one alembic.ini below it is used)."""
    from prefect_delivery.migrations_lab.cli import main as lab_main

    try:
        return lab_main(args.lab_args or ["--help"])
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT


def add_commands(sub) -> None:
    lab = sub.add_parser(
        "lab",
        add_help=False,
        help="migrations lab: `delivery lab check PATH` rehearses an Alembic project (phase "
        "plan, lint, round trips on an ephemeral PostgreSQL); `delivery lab --help`",
    )
    lab.add_argument("lab_args", nargs=argparse.REMAINDER)
    lab.set_defaults(func=cmd_lab)
