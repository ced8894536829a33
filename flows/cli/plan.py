"""``delivery plan``: what a delivery would do, changing nothing (tasks/plan.py)."""

from __future__ import annotations

import argparse
import json

from prefect_delivery.flows.cli.common import EXIT_OK, state_dirs
from prefect_delivery.flows.cli.status import STATE_DIR_HELP


def _s(seconds: float) -> str:
    from prefect_delivery.tasks.dora import duration

    return duration(seconds)


def print_plan(plan) -> None:
    print(f"Plan: deliver {plan.service} at {plan.commit} (author {plan.author or 'unknown'})")
    print(f"  changes   {plan.changes}")
    print(f"  build     {plan.build}")
    print(f"  test      {plan.tests}")
    print(f"  stages    {' -> '.join(plan.stages)}")
    for env in plan.environments:
        print(f"\n{env.name} ({env.url}): {env.action}")
        print(f"  policy    {env.policy}")
        if env.approval:
            print(f"  approval  {env.approval}; waits up to {_s(plan.approval_timeout_s)}")
        print(f"  serving   {env.serving or 'nothing'}")
        if env.database:
            print(f"  database  {env.database}, schema at {env.schema_at or 'base'}")
            if not env.migrations:
                print("  migrations none pending")
            for m in env.migrations:
                drops = f", drops {', '.join(m.drops)}" if m.drops else ""
                print(f"  migrate   {m.revision} ({m.phase or 'no phase'}{drops})")
                for gate in m.gates:
                    print(f"            gate: {gate}")
        if env.steps:
            print(f"  strategy  {env.strategy}")
        for step in env.steps:
            weights = (
                f"  weights new {step.weights['new']} stable {step.weights['stable']}"
                if step.weights
                else ""
            )
            if not step.max_s:
                span = ""
            elif not step.min_s:
                span = f"  up to {_s(step.max_s)}"
            elif step.min_s == step.max_s:
                span = f"  {_s(step.max_s)}"
            else:
                span = f"  {_s(step.min_s)} (up to {_s(step.max_s)} if extended)"
            print(f"    - {step.step}{weights}{span}")
        if env.bake_s and env.action == "deploy":
            print(f"  bake      {_s(env.bake_s)} monitored after the switch")
        if env.action == "deploy":
            print(f"  duration  {_s(env.min_s)} at least, {_s(env.max_s)} at most")
    print(
        f"\nExpected duration past build: at least {_s(plan.min_s)} (tests, starts and "
        f"approvers not counted, every analysis passing on its first window); at most "
        f"{_s(plan.max_s)} (every window extended, every start and the tests at their "
        "timeouts, each approval waiting its timeout)."
    )


def cmd_plan(args: argparse.Namespace) -> int:
    from prefect_delivery.tasks.plan import as_dict, plan_delivery

    plan = plan_delivery(
        args.service_dir,
        args.commit,
        args.env or None,
        state_dirs(args.state_dir),
        args.approval_timeout_s,
        service=args.service,
    )
    if args.json:
        print(json.dumps(as_dict(plan), indent=2))
    else:
        print_plan(plan)
    return EXIT_OK


def add_commands(sub) -> None:
    plan = sub.add_parser(
        "plan", help="what a delivery of a commit would do, changing nothing (a dry run)"
    )
    plan.add_argument("service_dir")
    plan.add_argument(
        "--service", help="refuse unless SERVICE_DIR holds this service (a guard for scripts)"
    )
    plan.add_argument("--commit", help="SHA or ref (default: HEAD)")
    plan.add_argument("--env", action="append", help="environment, in order (repeatable)")
    plan.add_argument(
        "--approval-timeout-s", type=float, default=3600.0, help="as the run would use (3600)"
    )
    plan.add_argument("--json", action="store_true")
    plan.add_argument("--state-dir", help=STATE_DIR_HELP)
    plan.set_defaults(func=cmd_plan)
