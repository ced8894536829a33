"""``delivery run``, ``rollback`` and ``retire``: parse, call the flow or task, print."""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect_delivery.flows.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    print_err,
    state_dirs,
)


def run_delivery(
    service_dir: str,
    commit: str | None,
    environments: list[str],
    auto_approve: bool,
    artifact_store: str,
    shards: int | None,
    on_busy: str = "wait",
):
    from prefect_delivery.flows.delivery import DeliveryFailed, delivery

    try:
        summary = delivery(
            service_dir=str(Path(service_dir).resolve()),
            commit=commit or "HEAD",
            environments=environments,
            auto_approve=auto_approve,
            artifact_store=artifact_store,
            shards=shards,
            on_busy=on_busy,
        )
    except DeliveryFailed as exc:
        from prefect_delivery.blocks.errors import ConfigError, InternalError

        bad_input = isinstance(exc.__cause__, ConfigError)
        print_err(("bad input: " if bad_input else "") + str(exc))
        if isinstance(exc, InternalError):
            return exc.summary, EXIT_INTERNAL
        return exc.summary, EXIT_BAD_INPUT if bad_input else EXIT_FAILED
    return summary, EXIT_OK if summary.outcome == "delivered" else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    _, code = run_delivery(
        args.service_dir,
        args.commit,
        args.env or ["staging", "production"],
        args.auto_approve,
        args.artifact_store,
        args.shards,
        args.on_busy,
    )
    return code


def cmd_rollback(args: argparse.Namespace) -> int:
    """Break glass: traffic back on the previous verified release at once (from the
    environment's snapshot, without waiting for Prefect), then verify and record it in the
    background; what cannot be switched at once goes through the rollback flow, said first."""
    from prefect_delivery.blocks.environment_view import EnvironmentView

    view = EnvironmentView.recall(args.environment, state_dirs(args.state_dir))
    if view is not None:
        view = view.pick(args.service, "delivery rollback")
        args.service = view.service
    if view is not None and not args.through_flow:
        from prefect_delivery.tasks.breakglass import break_glass

        switch = break_glass(view, args.reason, by="delivery rollback (a person)", to=args.to)
        if switch.status in ("switched", "already-there"):
            print(switch.message)
            if switch.status == "switched":
                log = spawn_record(view.state_dir, switch, args.reason, "person")
                print(
                    f"Verifying {switch.target.label} and recording the rollback in the "
                    f"background (the rollback-record flow; log: {log})."
                )
            return EXIT_OK
        print(f"{view.scope}: {switch.message}; the rollback flow does it now.", flush=True)
    return rollback_through_the_flow(args)


def rollback_through_the_flow(args: argparse.Namespace) -> int:
    from prefect_delivery.flows.rollback import rollback

    outcome = rollback(
        environment=args.environment,
        service=args.service,
        to=args.to,
        reason=args.reason,
        digest=getattr(args, "digest", None),
        source=getattr(args, "source", None) or "person",
    )
    where = f"{outcome.environment}/{outcome.service}"
    if outcome.status == "not-serving":
        print(f"{where}: the alert's release no longer serves; nothing to do")
    elif outcome.status == "already-there":
        print(f"{where} already serves {outcome.to_release.label}")
    else:
        how = "restarted from its artifact" if outcome.restarted else "still warm"
        print(
            f"{where} rolled back to {outcome.to_release.label} ({how}); "
            f"traffic switch {outcome.switch_ms:.1f}ms, {outcome.seconds:.1f}s in all"
        )
    return EXIT_OK


def spawn_record(state_dir: str, switch, reason: str, source: str) -> Path:
    """Start the bookkeeping of a break-glass switch as a process of its own (it needs the
    Prefect API, which the person must not wait for); returns its log file."""
    import subprocess
    import sys
    import time

    name = f"rollback-{switch.environment}-{switch.service}-{int(time.time())}.log"
    log = Path(state_dir) / "logs" / name
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "prefect_delivery.flows.cli",
        "_record-rollback",
        switch.environment,
        "--service",
        switch.service,
        "--to",
        switch.target.digest,
        "--reason",
        reason,
        "--switch-ms",
        f"{switch.switch_ms:.3f}",
        "--source",
        source,
    ]
    for release in switch.left:
        argv += ["--left", release.digest]
    with open(log, "ab") as out:
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return log


def cmd_record_rollback(args: argparse.Namespace) -> int:
    from prefect_delivery.flows.rollback import record_rollback

    outcome = record_rollback(
        environment=args.environment,
        service=args.service,
        to_digest=args.to,
        left=args.left or [],
        reason=args.reason,
        switch_ms=args.switch_ms,
        source=args.source,
    )
    print(
        f"{outcome.environment}/{outcome.service}: rollback to {outcome.to_release.label} "
        f"{outcome.status}"
    )
    return EXIT_OK


def cmd_retire(args: argparse.Namespace) -> int:
    """Stop the instances of one release that runs in ENV without taking traffic (kept warm
    for a rollback): e.g. so that a contract may drop what that release still uses."""
    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.tasks.deploy import retire_release

    env = Environment.load(args.environment).pick(args.service, "delivery retire")
    release, count = retire_release(env, args.release, args.reason)
    print(f"{env.scope}: retired {count} instance(s) of {release.label}")
    return EXIT_OK


SERVICE_HELP = "the service (may be left out where the environment carries only one)"


def add_commands(sub) -> None:
    run = sub.add_parser("run", help="deliver one commit of a service")
    run.add_argument("service_dir")
    run.add_argument("--commit", help="SHA or ref to deliver (default: HEAD)")
    run.add_argument("--env", action="append", help="environment, in order (repeatable)")
    run.add_argument("--auto-approve", action="store_true", help="approve gates automatically")
    run.add_argument("--artifact-store", default="artifacts", help="ArtifactStore block name")
    run.add_argument("--shards", type=int, help="parallel test shards")
    run.add_argument(
        "--on-busy",
        choices=["wait", "refuse"],
        default="wait",
        help="when another delivery holds an environment: wait (default) or refuse",
    )
    run.set_defaults(func=cmd_run)

    rb = sub.add_parser(
        "rollback", help="return a service in an environment to its previous verified release"
    )
    rb.add_argument("environment")
    rb.add_argument("--service", help=SERVICE_HELP)
    rb.add_argument("--to", help="digest or commit of a verified release (default: the previous)")
    rb.add_argument("--reason", default="requested from the command line")
    rb.add_argument("--state-dir", help="where the environment's snapshot is (see `status`)")
    rb.add_argument(
        "--through-flow",
        action="store_true",
        help="skip the break-glass switch: the rollback flow decides, switches and records "
        "(slower: it waits for Prefect and for the environment's slot)",
    )
    rb.add_argument("--digest", help=argparse.SUPPRESS)  # an alert's: act only while it serves
    rb.add_argument("--source", choices=["person", "monitor"], help=argparse.SUPPRESS)
    rb.set_defaults(func=cmd_rollback)

    record = sub.add_parser("_record-rollback", help=argparse.SUPPRESS)
    record.add_argument("environment")
    record.add_argument("--service", required=True)
    record.add_argument("--to", required=True)
    record.add_argument("--left", action="append")
    record.add_argument("--reason", required=True)
    record.add_argument("--switch-ms", type=float, default=0.0)
    record.add_argument("--source", choices=["person", "monitor"], default="person")
    record.set_defaults(func=cmd_record_rollback)

    rt = sub.add_parser("retire", help="stop a release kept warm (not serving) in an environment")
    rt.add_argument("environment")
    rt.add_argument("release", help="commit (or a prefix) or digest of the release")
    rt.add_argument("--service", help=SERVICE_HELP)
    rt.add_argument("--reason", default="retired from the command line")
    rt.set_defaults(func=cmd_retire)
