"""``delivery`` subcommands for the server path (a Prefect server, deployments, a worker).

    delivery server-setup                      block types, work pool, zombie-run automation
    delivery approve RUN_ID --approver NAME --reason TEXT
    delivery reject RUN_ID --approver NAME --reason TEXT
    delivery monitor-alert ENV [--service S] --reason TEXT
                                               a monitor's verification-failed event

Prefect has no CLI to resume a paused run with input; ``approve`` and ``reject`` do what the
UI's Resume form does (see tasks/approve.py ``answer_approval``).
"""

from __future__ import annotations

import argparse

EXIT_OK = 0


def cmd_server_setup(args: argparse.Namespace) -> int:
    from prefect_delivery.flows.cli.server_setup import server_setup

    result = server_setup(pool=args.pool, pool_type=args.pool_type, heartbeat_s=args.heartbeat_s)
    print(f"block types  {', '.join(result.block_types)}")
    print(
        f"work pool    {result.work_pool} ({args.pool_type}, "
        f"{'created' if result.work_pool_created else 'already there'})"
    )
    for automation in result.automations:
        print(f"automation   {automation}")
    print(
        "Next: `delivery setup` (environments), `prefect --no-prompt deploy --all`, "
        f"`prefect worker start --pool {result.work_pool}`"
    )
    return EXIT_OK


def cmd_answer(args: argparse.Namespace) -> int:
    from prefect_delivery.tasks.approval_answer import answer_approval

    approved = args.command == "approve"
    result = answer_approval(args.run_id, approved, args.approver, args.reason, args.service)
    what = f"{result.service} in {result.environment}" if result.service else result.environment
    print(
        f"{'Approved' if approved else 'Rejected'} {what} for flow run "
        f"{result.flow_run_id} ({result.flow_run_name}) as {args.approver}; "
        f"the run is {result.state or 'resuming'}"
    )
    return EXIT_OK


def cmd_monitor_alert(args: argparse.Namespace) -> int:
    from prefect.events.worker import EventsWorker

    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.blocks.errors import ConfigError
    from prefect_delivery.tasks.runtime import events

    env = Environment.load(args.environment).pick(args.service, "delivery monitor-alert")
    serving = env.observe().serving()
    if serving is None:
        raise ConfigError(
            f"monitor-alert {env.scope}",
            "no release of the service serves there, so an alert would name no release to "
            "roll back.",
            "check `delivery status`; an alert is about the release that serves.",
        )
    about = serving
    if args.digest and args.digest not in (serving.digest, serving.digest.split(":", 1)[1]):
        about = None  # the monitor watched another release: name only its digest
    event = events.verification_failed(
        env.name,
        about,
        args.reason,
        gate=args.gate,
        source="monitor",
        digest=None if about else args.digest,
        service=env.service,
    )
    EventsWorker.drain_all(timeout=10)
    what = about.label if about else f"digest {args.digest} (not the one serving)"
    print(
        f"Reported: {env.scope} ({what}) failed {args.gate}: {args.reason}"
        + (f" [event {event.id}]" if event is not None else " [events are off]")
    )
    return EXIT_OK


def cmd_monitor_listen(args: argparse.Namespace) -> int:
    """Always on: a monitor's alert (a verification-failed event with delivery.source=monitor)
    moves traffic back at once (tasks/monitor_listener.py)."""
    import subprocess
    import sys

    from prefect_delivery.flows.cli.common import state_dirs
    from prefect_delivery.flows.cli.run import spawn_record
    from prefect_delivery.tasks.monitor_listener import listen

    def spawn(view, switch, reason):
        return spawn_record(view.state_dir, switch, reason, "monitor")

    def through_flow(environment: str, service: str, digest: str, reason: str):
        argv = [sys.executable, "-m", "prefect_delivery.flows.cli", "rollback", environment]
        argv += ["--service", service, "--through-flow", "--digest", digest]
        argv += ["--source", "monitor", "--reason", reason]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)

    print(
        f"Listening for monitors' alerts about {', '.join(args.env) if args.env else 'every '}"
        f"{'' if args.env else 'environment'} (Ctrl-C to stop)",
        flush=True,
    )
    listen(state_dirs(args.state_dir), args.env or None, spawn, through_flow)
    return EXIT_OK


def add_commands(sub) -> None:
    """Add the server-path subcommands to the ``delivery`` parser."""
    setup = sub.add_parser(
        "server-setup", help="prepare a Prefect server: block types, work pool, automations"
    )
    setup.add_argument("--pool", default="delivery-process", help="work pool name")
    setup.add_argument(
        "--pool-type", default="process", help="process (default) or docker (prefect-docker)"
    )
    setup.add_argument(
        "--heartbeat-s",
        type=int,
        default=30,
        help="PREFECT_FLOWS_HEARTBEAT_FREQUENCY of the runs (prefect.yaml sets 30); a run "
        "silent for three heartbeats is marked Crashed",
    )
    setup.set_defaults(func=cmd_server_setup)

    for name, verb in (("approve", "approve"), ("reject", "reject")):
        p = sub.add_parser(name, help=f"{verb} a delivery waiting at its approval gate")
        p.add_argument("run_id", help="the paused flow run's id (UUID)")
        p.add_argument("--approver", required=True, help="who decides (recorded)")
        p.add_argument("--reason", required=True, help="why (recorded)")
        p.add_argument(
            "--service", help="answer only if the run waits with a release of this service"
        )
        p.set_defaults(func=cmd_answer)

    alert = sub.add_parser(
        "monitor-alert",
        help="report a failed check of an environment from outside a delivery "
        "(emits delivery.release.verification-failed with delivery.source=monitor)",
    )
    alert.add_argument("environment")
    alert.add_argument(
        "--service", help="the service whose check failed (may be left out where the "
        "environment carries only one)"
    )
    alert.add_argument("--reason", required=True)
    alert.add_argument("--gate", default="monitor", help="which check failed")
    alert.add_argument(
        "--digest",
        help="the release the check watched (default: the one serving now); the rollback acts "
        "only while it still serves",
    )
    alert.set_defaults(func=cmd_monitor_alert)

    listener = sub.add_parser(
        "monitor-listen",
        help="always on, beside the worker: a monitor's alert rolls its environment back at "
        "once (break glass), then verifies and records it",
    )
    listener.add_argument("--env", action="append", help="only these environments")
    listener.add_argument("--state-dir", help="where the environments' snapshots are")
    listener.set_defaults(func=cmd_monitor_listen)
