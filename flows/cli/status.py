"""``delivery status`` and ``delivery down``: print what tasks/status.py reads, one entry per
service in each environment."""

from __future__ import annotations

import argparse
import json

from prefect_delivery.flows.cli.common import EXIT_OK, state_dirs
from prefect_delivery.tasks.status import shut_down, status_report


def print_status(report: list[dict]) -> None:
    if not report:
        print("No environments yet. Run `delivery demo` or `delivery setup`.")
        return
    width = max(len(env["service"]) for env in report)
    for env in report:
        live = env["live"]
        head = f"{env['environment']:<11} {env['service']:<{width}} {env['url']:<24}"
        if not env["router_running"]:
            print(f"{head} router stopped")
        elif live is None:
            print(f"{head} serving nothing")
        else:
            print(
                f"{head} {live['version']} commit {live['commit'][:12]} "
                f"digest {live['digest'][:19]} ({live['share']:.0f}%)"
            )
        policy = env.get("policy")
        if policy:
            print(
                f"    policy   {policy['summary']}; {env['strategy']} x{policy['instances']}, "
                f"bake {policy['bake_s']:g}s, steps {policy['step_pause_s']:g}s"
            )
        db = env.get("database")
        if db:
            where = f"schema at {db['revision'] or 'base'}" if db["state"] == "up" else db["state"]
            print(f"    database {db['url']}  {where}")
        for inst in env["instances"]:
            state = "alive" if inst["alive"] else "exited"
            print(
                f"    {inst['slot']:<8} {inst['url']:<24} weight {inst['weight']:<4} "
                f"{inst['router_status']:<9} {state:<6} {inst['version']} {inst['commit'][:12]}"
            )


def cmd_status(args: argparse.Namespace) -> int:
    report = status_report(args.env or None, state_dirs(args.state_dir), args.service or None)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_status(report)
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    stopped = shut_down(args.env or None, state_dirs(args.state_dir), args.service or None)
    print(f"Stopped {len(stopped)} process(es): {', '.join(stopped) or 'none'}")
    return EXIT_OK


STATE_DIR_HELP = (
    "where the environments' snapshots are (default: $DELIVERY_STATE_DIR, ./.delivery and "
    "the user's state folder); read without the Prefect API"
)


def add_commands(sub) -> None:
    status = sub.add_parser(
        "status", help="what is live for each service in each environment, read live"
    )
    status.add_argument("--json", action="store_true")
    status.add_argument("--env", action="append", help="only this environment (repeatable)")
    status.add_argument("--service", action="append", help="only this service (repeatable)")
    status.add_argument("--state-dir", help=STATE_DIR_HELP)
    status.set_defaults(func=cmd_status)

    down = sub.add_parser("down", help="stop every instance and router of the environments")
    down.add_argument("--env", action="append", help="only this environment (repeatable)")
    down.add_argument(
        "--service",
        action="append",
        help="only this service's instances and routers (repeatable; the environments' "
        "databases keep running)",
    )
    down.add_argument("--state-dir", help=STATE_DIR_HELP)
    down.set_defaults(func=cmd_down)
