"""The ``delivery`` command.

    delivery demo                       deliver hello-service's schema change (releases 1-4)
    delivery run SERVICE_DIR            deliver one commit of a service
    delivery status [--json]            what is live in each environment (read live)
    delivery rollback ENV               return ENV to its previous verified release
    delivery retire ENV COMMIT          stop a release kept warm (not serving) in ENV
    delivery down                       stop every instance and HAProxy the project started
    delivery setup                      create local blocks (artifact store, staging, production)
    delivery demo|setup --target docker the container path: images, a registry, DockerTarget
    delivery server-setup               a Prefect server: block types, work pool, automations
    delivery approve|reject RUN_ID      answer a run waiting at its approval gate
    delivery monitor-alert ENV          a monitor's failed check: rolls ENV back (automation)
    delivery lab check PATH             rehearse an Alembic project (or a service's migrations)

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

    from prefect_delivery.blocks.environment import Environment

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
                "database": _database_status(env),
            }
        )
    return report


def _database_status(env) -> dict | None:
    """The environment's database: masked URL and revision (a stopped local one: not asked)."""
    from prefect_delivery.blocks.errors import DeliveryError

    if env.database is None:
        return None
    status = {"url": env.database.masked_url, "revision": None, "state": "up"}
    cluster = env.database.cluster()
    if cluster is not None and not cluster.running:
        status["state"] = "stopped"
        return status
    try:
        status["revision"] = env.database.current_revision(env.name)
    except DeliveryError as exc:
        status["state"] = str(exc).splitlines()[0][:200]
    return status


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
    report = status_report(args.env or None)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_status(report)
    return EXIT_OK


def shut_down(names: list[str] | None = None) -> list[str]:
    from prefect_delivery.blocks.environment import Environment

    stopped = []
    for name in names or environment_names():
        env = Environment.load(name)
        for instance in env.target.list(env.name):
            env.target.stop(instance, timeout_s=5)
            stopped.append(instance.id)
        env.router.stop()
        stopped.append(f"haproxy:{env.name}")
        if env.database is not None and env.database.stop():
            stopped.append(f"postgres:{env.name}")
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
        from prefect_delivery.blocks.errors import ConfigError

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
        args.on_busy,
    )
    return code


def cmd_rollback(args: argparse.Namespace) -> int:
    from prefect_delivery.flows.rollback import rollback

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


def cmd_retire(args: argparse.Namespace) -> int:
    """Stop the instances of one release that runs in ENV without taking traffic (kept warm
    for a rollback): e.g. so that a contract may drop what that release still uses."""
    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.blocks.errors import ConfigError
    from prefect_delivery.tasks.deploy import retire

    env = Environment.load(args.environment)
    live = env.observe()
    chosen = [
        li
        for li in live.instances
        if li.instance.release.commit.startswith(args.release)
        or li.instance.release.digest in (args.release, f"sha256:{args.release}")
    ]
    if not chosen:
        raise ConfigError(
            f"retire {env.name} {args.release}",
            "no instance of such a release runs there.",
            "pick a commit or digest from `delivery status`.",
        )
    serving = [li.instance.id for li in chosen if li.weight > 0]
    if serving:
        raise ConfigError(
            f"retire {env.name} {args.release}",
            f"{', '.join(serving)} take(s) traffic; only a release kept warm can be retired.",
            f"deliver another release or `delivery rollback {env.name}` first.",
        )
    release = chosen[0].instance.release
    count = retire.fn(env, [li.instance for li in chosen])
    env.ledger().append("retired", release, None, reason=args.reason)
    print(f"{env.name}: retired {count} instance(s) of {release.label}")
    return EXIT_OK


def _container_options(args: argparse.Namespace) -> dict:
    """LocalSetup fields of --target/--registry/--base-image ('auto': offline base if here)."""
    if args.target != "docker":
        return {"target": args.target}
    from pydantic import ValidationError

    from prefect_delivery.blocks.errors import ConfigError
    from prefect_delivery.blocks.registry import ImageRegistry
    from prefect_delivery.flows.setup import pick_base_image

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
    from prefect_delivery.flows.setup import LocalSetup, create_local_blocks

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
            databases=not args.no_database,
            **_container_options(args),
        )
    )
    for name, url in urls.items():
        print(f"{name:<11} {url}")
    if not args.no_database:
        state = _state_dir(args.state_dir)
        print(
            f"databases   a local PostgreSQL per environment in {state / 'postgres'} (running; "
            "`delivery status` shows their schema, `delivery down` stops them)"
        )
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from prefect_delivery.flows.demo import (
        SCHEMA_DEMO,
        prepare_repo,
        reset_environment,
        set_build_kind,
        set_schema_release,
        set_version,
    )
    from prefect_delivery.flows.setup import LocalSetup, create_local_blocks

    started = time.perf_counter()
    state = _state_dir(args.state_dir)
    databases = not args.no_database
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
            databases=databases,
            **_container_options(args),
        )
    )
    names = ["staging", "production"]
    cleaned = [what for name in names for what in reset_environment(name)]
    if cleaned:
        print(f"Demo: starting from a clean slate ({'; '.join(cleaned)})")
    repo = prepare_repo(state)
    if args.target == "docker":
        set_build_kind(repo, "image")
    if databases:
        plan = SCHEMA_DEMO
        print(
            "Demo: each environment has its own PostgreSQL; hello-service splits people.name "
            "into first_name/last_name over releases 2-4 (expand, migrate, contract), each "
            "phase applied to the database before the code that needs it"
        )
    else:
        plan = [(1, "1.0.0", "hello-service"), (2, "1.1.0", "a new greeting over release 1")]
    for number, version, what in plan:
        if databases:
            set_schema_release(repo, number)
            set_version(repo, version)
        else:
            set_version(repo, version, greeting="Hello again" if number > 1 else None)
        sha = repo.commit_all(f"hello-service {version}: {what}")
        print(f"\nDemo: delivering release {number} ({version}, commit {sha[:12]}): {what}")
        summary, code = run_delivery(repo.path, sha, names, True, "artifacts", None)
        if code != EXIT_OK:
            return code
        if databases:
            for line in _schema_lines(names):
                print(line)
    number, version, _ = plan[-1]
    print(f"\nBoth environments are running release {number} ({version}) from the same digest:")
    print_status(status_report(names))
    print(f"\nDemo finished in {time.perf_counter() - started:.1f}s.")
    print(
        "\nTry: curl " + urls["production"] + "/api/people   ·   `delivery status`   ·   "
        "`delivery down` to stop everything"
    )
    return EXIT_OK


def _schema_lines(names: list[str]) -> list[str]:
    """Per environment: the database's revision and which columns the live code reads."""
    import httpx

    from prefect_delivery.blocks.environment import Environment

    lines = []
    for name in names:
        env = Environment.load(name)
        revision = env.database.current_revision(name) if env.database else None
        try:
            body = httpx.get(env.url + "/api/people", timeout=5).json()
            reads = f"code reads {body.get('schema')}, {len(body.get('people', []))} people"
        except (httpx.HTTPError, ValueError) as exc:
            reads = f"/api/people did not answer ({type(exc).__name__})"
        lines.append(f"  {name:<11} schema at {revision or 'base'}; {reads}")
    return lines


def cmd_lab(args: argparse.Namespace) -> int:
    """``delivery lab check PATH ...``: migrations_lab's own command line (PATH may be a
    service folder: the one alembic.ini below it is used)."""
    from prefect_delivery.migrations_lab.cli import main as lab_main

    try:
        return lab_main(args.lab_args or ["--help"])
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT


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
            "--no-database",
            action="store_true",
            help="environments without a database (default: a local PostgreSQL each, under "
            "the state folder; needs the PostgreSQL server binaries)",
        )
        p.add_argument(
            "--base-image",
            default="auto",
            help="docker: BASE_IMAGE build arg ('auto': <registry>/prefect-delivery/"
            "python-web:3.11 when present, else the Dockerfile's python:3.11-slim-bookworm)",
        )

    demo = sub.add_parser(
        "demo",
        help="deliver hello-service release after release (with databases: the people schema "
        "change, expand / migrate / contract, releases 1-4; --no-database: releases 1 and 2)",
    )
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
    run.add_argument(
        "--on-busy",
        choices=["wait", "refuse"],
        default="wait",
        help="when another delivery holds an environment: wait (default) or refuse",
    )
    run.set_defaults(func=cmd_run)

    rb = sub.add_parser("rollback", help="return an environment to its previous verified release")
    rb.add_argument("environment")
    rb.add_argument("--to", help="digest or commit of a verified release (default: the previous)")
    rb.add_argument("--reason", default="requested from the command line")
    rb.set_defaults(func=cmd_rollback)

    rt = sub.add_parser("retire", help="stop a release kept warm (not serving) in an environment")
    rt.add_argument("environment")
    rt.add_argument("release", help="commit (or a prefix) or digest of the release")
    rt.add_argument("--reason", default="retired from the command line")
    rt.set_defaults(func=cmd_retire)

    status = sub.add_parser("status", help="what is live in each environment, read live")
    status.add_argument("--json", action="store_true")
    status.add_argument("--env", action="append")
    status.set_defaults(func=cmd_status)

    down = sub.add_parser("down", help="stop every instance and HAProxy of the environments")
    down.add_argument("--env", action="append")
    down.set_defaults(func=cmd_down)

    lab = sub.add_parser(
        "lab",
        add_help=False,
        help="migrations lab: `delivery lab check PATH` rehearses an Alembic project (phase "
        "plan, lint, round trips on an ephemeral PostgreSQL); `delivery lab --help`",
    )
    lab.add_argument("lab_args", nargs=argparse.REMAINDER)
    lab.set_defaults(func=cmd_lab)

    from prefect_delivery.flows.cli_server import add_server_commands  # server-setup, approve, reject, ...

    add_server_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from prefect_delivery.blocks.errors import ConfigError, DeliveryError

    try:
        return args.func(args)
    except ConfigError as exc:
        _print_err(str(exc))
        return EXIT_BAD_INPUT
    except ValidationError as exc:  # settings built from the command line
        from prefect_delivery.tasks.manifest import describe_validation_error

        _print_err(f"bad input: {exc.title}: " + describe_validation_error("", exc))
        return EXIT_BAD_INPUT
    except DeliveryError as exc:
        _print_err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _print_err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
