"""The ``delivery`` command.

    delivery demo                       deliver hello-service twice (release 1, then 2)
    delivery run SERVICE_DIR            deliver one commit of a service
    delivery status [--json]            what is live in each environment (read live)
    delivery rollback ENV               return ENV to its previous verified release
    delivery down                       stop every instance and HAProxy the project started
    delivery setup                      create local blocks (artifact store, staging, production)
    delivery demo|setup --target docker the container path: images, a registry, DockerTarget
    delivery server-setup               a Prefect server: block types, work pool, automations
    delivery approve|reject RUN_ID      answer a run waiting at its approval gate
    delivery monitor-alert ENV          a monitor's failed check: rolls ENV back (automation)

Runs flows on the Prefect API the active profile names; without one, Prefect's ephemeral API
(nothing to start). Analytics are off.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _state_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("DELIVERY_STATE_DIR") or ".delivery").resolve()


def _print_err(message: str) -> None:
    print(f"delivery: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------- status / down
def environment_names() -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type("delivery-environment")
        except Exception:  # the block type is not registered yet: no environments
            return []
    return sorted(d.name for d in documents if d.name)


def status_report(names: list[str] | None = None) -> list[dict]:
    import httpx

    from blocks.environment import Environment

    report = []
    for name in names or environment_names():
        env = Environment.load(name)
        live = env.observe()
        shares = live.shares()
        serving = live.serving()
        instances = []
        for li in live.instances:
            answered = None
            if li.instance.alive:
                try:
                    answered = httpx.get(
                        li.instance.url + li.instance.release.run.version_path, timeout=2
                    ).json()
                except (httpx.HTTPError, ValueError):
                    answered = None
            instances.append(
                {
                    "id": li.instance.id,
                    "url": li.instance.url,
                    "slot": li.instance.slot,
                    "alive": li.instance.alive,
                    "weight": li.weight,
                    "router_status": li.router_status,
                    "version": li.instance.release.version,
                    "commit": li.instance.release.commit,
                    "digest": li.instance.release.digest,
                    "answers": answered,
                }
            )
        report.append(
            {
                "environment": env.name,
                "url": env.url,
                "router_running": live.router_running,
                "strategy": env.strategy.kind,
                "live": None
                if serving is None
                else {
                    "service": serving.service,
                    "version": serving.version,
                    "commit": serving.commit,
                    "digest": serving.digest,
                    "share": round(shares.get(serving.digest, 0.0), 1),
                },
                "shares": {d: round(s, 1) for d, s in shares.items()},
                "instances": instances,
            }
        )
    return report


def print_status(report: list[dict]) -> None:
    if not report:
        print("No environments yet. Run `delivery demo` or `delivery setup`.")
        return
    for env in report:
        live = env["live"]
        head = f"{env['environment']:<11} {env['url']:<24}"
        if not env["router_running"]:
            print(f"{head} router stopped")
        elif live is None:
            print(f"{head} serving nothing")
        else:
            print(
                f"{head} {live['service']} {live['version']} commit {live['commit'][:12]} "
                f"digest {live['digest'][:19]} ({live['share']:.0f}%)"
            )
        for inst in env["instances"]:
            state = "alive" if inst["alive"] else "exited"
            print(
                f"    {inst['slot']:<8} {inst['url']:<24} weight {inst['weight']:<4} "
                f"{inst['router_status']:<9} {state:<6} {inst['version']} {inst['commit'][:12]}"
            )


def cmd_status(args: argparse.Namespace) -> int:
    report = status_report(args.env or None)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_status(report)
    return EXIT_OK


def shut_down(names: list[str] | None = None) -> list[str]:
    from blocks.environment import Environment

    stopped = []
    for name in names or environment_names():
        env = Environment.load(name)
        for instance in env.target.list(env.name):
            env.target.stop(instance, timeout_s=5)
            stopped.append(instance.id)
        env.router.stop()
        stopped.append(f"haproxy:{env.name}")
    return stopped


def cmd_down(args: argparse.Namespace) -> int:
    stopped = shut_down(args.env or None)
    print(f"Stopped {len(stopped)} process(es): {', '.join(stopped) or 'none'}")
    return EXIT_OK


# ---------------------------------------------------------------------------- run / demo
def run_delivery(
    service_dir: str,
    commit: str | None,
    environments: list[str],
    auto_approve: bool,
    artifact_store: str,
    shards: int | None,
):
    from flows.delivery import DeliveryFailed, delivery

    try:
        summary = delivery(
            service_dir=str(Path(service_dir).resolve()),
            commit=commit or "HEAD",
            environments=environments,
            auto_approve=auto_approve,
            artifact_store=artifact_store,
            shards=shards,
        )
    except DeliveryFailed as exc:
        from blocks.errors import ConfigError

        bad_input = isinstance(exc.__cause__, ConfigError)
        _print_err(("bad input: " if bad_input else "") + str(exc))
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
    )
    return code


def cmd_rollback(args: argparse.Namespace) -> int:
    from flows.rollback import rollback

    outcome = rollback(environment=args.environment, to=args.to, reason=args.reason)
    if outcome.status == "already-there":
        print(f"{outcome.environment} already serves {outcome.to_release.label}")
    else:
        how = "restarted from its artifact" if outcome.restarted else "still warm"
        print(
            f"{outcome.environment} rolled back to {outcome.to_release.label} ({how}); "
            f"traffic switch {outcome.switch_ms:.1f}ms, {outcome.seconds:.1f}s in all"
        )
    return EXIT_OK


def _container_options(args: argparse.Namespace) -> dict:
    """LocalSetup fields of --target/--registry/--base-image ('auto': offline base if here)."""
    if args.target != "docker":
        return {"target": args.target}
    from pydantic import ValidationError

    from blocks.errors import ConfigError
    from blocks.registry import ImageRegistry
    from flows.setup import pick_base_image

    try:
        ImageRegistry(address=args.registry)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError("--registry", f"{problem}.", "e.g. --registry 127.0.0.1:5000") from None
    base = pick_base_image(args.registry) if args.base_image == "auto" else args.base_image
    print(
        f"Container path: images pushed to {args.registry}, built FROM "
        f"{base or 'the Dockerfile default (python:3.11-slim-bookworm)'}"
    )
    return {"target": "docker", "registry": args.registry, "base_image": base or None}


def cmd_setup(args: argparse.Namespace) -> int:
    from flows.setup import LocalSetup, create_local_blocks

    urls = create_local_blocks(
        LocalSetup(
            state_dir=str(_state_dir(args.state_dir)),
            staging_port=args.staging_port,
            production_port=args.production_port,
            staging_strategy=args.strategy,
            production_strategy=args.strategy,
            bake_s=args.bake_s,
            keep_previous_s=args.keep_previous_s,
            instances=args.instances,
            production_requires_approval=not args.no_approval,
            **_container_options(args),
        )
    )
    for name, url in urls.items():
        print(f"{name:<11} {url}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from flows.demo import prepare_repo, set_build_kind, set_version
    from flows.setup import LocalSetup, create_local_blocks

    state = _state_dir(args.state_dir)
    urls = create_local_blocks(
        LocalSetup(
            state_dir=str(state),
            staging_port=args.staging_port,
            production_port=args.production_port,
            staging_strategy=args.strategy,
            production_strategy=args.strategy,
            bake_s=args.bake_s,
            keep_previous_s=0,
            instances=args.instances,
            **_container_options(args),
        )
    )
    repo = prepare_repo(state)
    if args.target == "docker":
        set_build_kind(repo, "image")
    set_version(repo, "1.0.0")
    first = repo.commit_all("hello-service 1.0.0")
    print(f"Demo: delivering release 1 (1.0.0, commit {first[:12]})")
    summary, code = run_delivery(
        repo.path, first, ["staging", "production"], True, "artifacts", None
    )
    if code != EXIT_OK:
        return code
    set_version(repo, "1.1.0", greeting="Hello again")
    second = repo.commit_all("hello-service 1.1.0")
    print(f"Demo: delivering release 2 (1.1.0, commit {second[:12]}) over the live release 1")
    summary, code = run_delivery(
        repo.path, second, ["staging", "production"], True, "artifacts", None
    )
    if code != EXIT_OK:
        return code
    print("\nBoth environments are running release 2:")
    print_status(status_report(["staging", "production"]))
    print(
        "\nTry: curl " + urls["production"] + "/version   ·   `delivery status`   ·   "
        "`delivery down` to stop everything"
    )
    return EXIT_OK


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delivery", description="Continuous delivery as Prefect flows."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def local_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state-dir", help="runtime state (default: $DELIVERY_STATE_DIR or ./.delivery)"
        )
        p.add_argument("--staging-port", type=int, default=18081)
        p.add_argument("--production-port", type=int, default=18082)
        p.add_argument("--strategy", default="blue-green", help="blue-green, canary or rolling")
        p.add_argument("--instances", type=int, default=1)
        p.add_argument("--bake-s", type=float, default=5.0, help="production bake window")
        p.add_argument(
            "--target",
            choices=["process", "docker"],
            default="process",
            help="process: wheels as local processes; docker: images in containers",
        )
        p.add_argument("--registry", default="127.0.0.1:5000", help="docker: registry host:port")
        p.add_argument(
            "--base-image",
            default="auto",
            help="docker: BASE_IMAGE build arg ('auto': <registry>/prefect-delivery/"
            "python-web:3.11 when present, else the Dockerfile's python:3.11-slim-bookworm)",
        )

    demo = sub.add_parser("demo", help="deliver hello-service twice, release 1 then release 2")
    local_options(demo)
    demo.set_defaults(func=cmd_demo)

    setup = sub.add_parser("setup", help="create local blocks: artifacts, staging, production")
    local_options(setup)
    setup.add_argument("--keep-previous-s", type=float, default=3600)
    setup.add_argument("--no-approval", action="store_true", help="production needs no approval")
    setup.set_defaults(func=cmd_setup)

    run = sub.add_parser("run", help="deliver one commit of a service")
    run.add_argument("service_dir")
    run.add_argument("--commit", help="SHA or ref to deliver (default: HEAD)")
    run.add_argument("--env", action="append", help="environment, in order (repeatable)")
    run.add_argument("--auto-approve", action="store_true", help="approve gates automatically")
    run.add_argument("--artifact-store", default="artifacts", help="ArtifactStore block name")
    run.add_argument("--shards", type=int, help="parallel test shards")
    run.set_defaults(func=cmd_run)

    rb = sub.add_parser("rollback", help="return an environment to its previous verified release")
    rb.add_argument("environment")
    rb.add_argument("--to", help="digest or commit of a verified release (default: the previous)")
    rb.add_argument("--reason", default="requested from the command line")
    rb.set_defaults(func=cmd_rollback)

    status = sub.add_parser("status", help="what is live in each environment, read live")
    status.add_argument("--json", action="store_true")
    status.add_argument("--env", action="append")
    status.set_defaults(func=cmd_status)

    down = sub.add_parser("down", help="stop every instance and HAProxy of the environments")
    down.add_argument("--env", action="append")
    down.set_defaults(func=cmd_down)

    from flows.cli_server import add_server_commands  # server-setup, approve, reject, ...

    add_server_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from blocks.errors import ConfigError, DeliveryError

    try:
        return args.func(args)
    except ConfigError as exc:
        _print_err(str(exc))
        return EXIT_BAD_INPUT
    except DeliveryError as exc:
        _print_err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _print_err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
