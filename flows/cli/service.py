"""``delivery service add|list|remove``: register the services an environment carries.

    delivery service add SERVICE_DIR [--env E ...] [--port E=PORT] [--strategy K]
                                     [--instances N] [--approvers a,b] [--bake-s S]
                                     [--step-pause-s S] [--requires-approval] [--no-database]
    delivery service list [--json]
    delivery service remove NAME [--env E ...]

Adding a service gives it a route in each environment (its own frontend port, so its own
router) and, where the environment runs a local PostgreSQL, its own database and role in it
(named after the service), kept in a PostgresDatabase block ``<env>-<service>-db``. Its
settings only ever tighten the environment's policy (blocks/services.py): every one is checked
against each environment before anything is saved, so bad input changes nothing. Adding it
again changes its settings and keeps its port. A service delivered before services existed
(an environment saved by an older version) keeps the port and names it had.

On the server path one parameterised deployment (``delivery/deliver`` in prefect.yaml) delivers
any registered service: ``prefect deployment run delivery/deliver -p service_dir=PATH``.
"""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.flows.cli.common import EXIT_OK, state_dirs

#: Ports a route may get: from the environment router's frontend_port up.
PORT_SPAN = 2000


def database_name(service: str) -> str:
    """What a service's database and role are called in its environment's cluster."""
    return service.replace("-", "_")


def _ports(values: list[str] | None) -> dict[str, int]:
    found: dict[str, int] = {}
    for value in values or []:
        env, _, port = value.partition("=")
        try:
            number = int(port)
        except ValueError:
            number = 0
        if not env or not 1 <= number <= 65535:
            raise ConfigError(
                f"--port {value}",
                "is not ENVIRONMENT=PORT.",
                "e.g. --port staging=18091 --port production=18092",
            )
        found[env] = number
    return found


def _next_port(start: int, host: str, taken: set[int]) -> int:
    from prefect_delivery.blocks.ports import bindable

    for port in range(start, min(65536, start + PORT_SPAN)):
        if port not in taken and bindable(host, port):
            return port
    raise ConfigError(
        "--port",
        f"no free frontend port from {start} to {start + PORT_SPAN - 1} on {host}.",
        "name one with --port ENVIRONMENT=PORT.",
    )


def service_database(env, service: str) -> str | None:
    """The service's own database in the environment's local PostgreSQL (a role and a
    database named after it, a random password kept only in its block): the block's name.
    None where the environment has no local cluster to create it in."""
    from prefect_delivery.blocks.database import PostgresDatabase

    cluster = env.database.cluster() if env.database is not None else None
    if cluster is None:
        return None
    cluster.start()
    block = f"{env.name}-{service}-db"
    name = database_name(service)
    try:
        previous = PostgresDatabase.load(block)
    except ValueError:
        previous = None
    if previous is not None and previous.local_cluster == str(cluster.folder):
        cluster.ensure_database(name, name, None)
        return block
    password = secrets.token_urlsafe(18)
    cluster.ensure_database(name, name, password)
    PostgresDatabase(url=cluster.url(name, name, password), local_cluster=str(cluster.folder)).save(
        block, overwrite=True
    )
    return block


def add_service(
    service_dir: str,
    environments: list[str] | None = None,
    ports: dict[str, int] | None = None,
    settings: dict | None = None,
    database: bool = True,
) -> dict[str, str]:
    """Register the service in ``service_dir`` in each environment (all Environment blocks
    when none are named); returns environment -> its URL there."""
    from pydantic import ValidationError

    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.blocks.services import ServiceRoute
    from prefect_delivery.tasks.manifest import describe_validation_error, load_manifest
    from prefect_delivery.tasks.status import environment_names

    folder = Path(service_dir).expanduser().resolve()
    service = load_manifest(folder).service.name
    names = environments or environment_names()
    if not names:
        raise ConfigError(
            "environments",
            "there are none yet.",
            "run `delivery setup` first (it creates staging and production).",
        )
    ports = dict(ports or {})
    unknown = [e for e in ports if e not in names]
    if unknown:
        raise ConfigError(
            f"--port {unknown[0]}=...",
            f"is not one of the environments the service is added to ({', '.join(names)}).",
            "name one of them, or add --env for it.",
        )
    envs = {}
    for name in names:
        try:
            envs[name] = Environment.load(name)
        except ValueError:
            raise ConfigError(
                f"--env {name}", "has no Environment block.", "check the name, or run setup."
            ) from None
    taken: set[int] = set()  # every frontend (and exporter) port of another service
    for env in envs.values():
        for other in env.service_names():
            if other != service:
                route = env.route(other)
                taken |= {p for p in (route.port, route.metrics_port) if p}
    planned = {}
    for name, env in envs.items():
        old = env.services.get(service)
        try:
            adopted = env.route(service)  # a setup from before services keeps its names
        except ConfigError:
            adopted = None
        if old is not None:
            port = ports.get(name, old.port)
        elif adopted is not None:
            port = ports.get(name, adopted.port)
        else:
            port = ports.get(name) or _next_port(
                env.router.frontend_port, env.router.frontend_host, taken
            )
        if port in taken:
            raise ConfigError(
                f"--port {name}={port}",
                "is another service's frontend port.",
                "choose another, or leave --port out to get a free one.",
            )
        taken.add(port)
        try:
            route = ServiceRoute(
                port=port,
                adopted=bool((old and old.adopted) or (old is None and adopted is not None)),
                database=old.database if old else None,
                **(settings or {}),
            )
        except ValidationError as exc:
            raise ConfigError(
                f"service {service} settings", describe_validation_error("", exc)
            ) from None
        candidate = env.model_copy(update={"services": {**env.services, service: route}})
        candidate.for_service(service, str(folder))  # checks the settings against the policy
        planned[name] = (env, route)
    urls = {}
    for name, (env, route) in planned.items():
        if database and not route.adopted and route.database is None:
            route = route.model_copy(update={"database": service_database(env, service)})
        elif not database and not route.adopted:
            route = route.model_copy(update={"database": None})
        env.services = {**env.services, service: route}
        env.save(name, overwrite=True)
        scoped = env.for_service(service, str(folder))
        scoped.remember()
        urls[name] = scoped.url
    return urls


def cmd_add(args: argparse.Namespace) -> int:
    settings = {
        key: value
        for key, value in {
            "strategy": args.strategy,
            "instances": args.instances,
            "approvers": [a.strip() for a in args.approvers.split(",")] if args.approvers else None,
            "bake_s": args.bake_s,
            "step_pause_s": args.step_pause_s,
            "requires_approval": args.requires_approval or None,
        }.items()
        if value is not None
    }
    urls = add_service(
        args.service_dir, args.env or None, _ports(args.port), settings, not args.no_database
    )
    for name, url in urls.items():
        print(f"{name:<11} {url}")
    print(
        f"Deliver it: `delivery run {args.service_dir}` (or on the server path: "
        f"`prefect deployment run delivery/deliver -p service_dir={args.service_dir}`)"
    )
    return EXIT_OK


def service_table(dirs: list[str]) -> list[dict]:
    from prefect_delivery.blocks.environment_view import EnvironmentView

    rows = []
    for view in EnvironmentView.recall_all(dirs):
        for name, route in sorted(view.routes().items()):
            scoped = view.for_service(name)
            rows.append(
                {
                    "environment": view.name,
                    "service": name,
                    "url": scoped.url,
                    "adopted": route.adopted,
                    "strategy": scoped.strategy.get("kind"),
                    "instances": scoped.strategy.get("instances"),
                    "approval": scoped.promotion.get("requires_approval", False),
                    "approvers": scoped.promotion.get("approvers") or [],
                    "database": (scoped.database or {}).get("masked_url"),
                }
            )
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    rows = service_table(state_dirs(args.state_dir))
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("No services yet. Register one: `delivery service add SERVICE_DIR`.")
    for row in rows:
        who = ", ".join(row["approvers"]) or "anyone"
        approval = f"approval by {who}" if row["approval"] else "no approval"
        print(
            f"{row['environment']:<11} {row['service']:<20} {row['url']:<24} "
            f"{row['strategy']} x{row['instances']}, {approval}"
            + (f", database {row['database']}" if row["database"] else "")
        )
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.tasks.status import environment_names

    names = args.env or environment_names()
    removed = []
    for name in names:
        env = Environment.load(name)
        if args.name not in env.services:
            continue
        running = [i.id for i in env.for_service(args.name).running()]
        if running:
            raise ConfigError(
                f"service remove {args.name}",
                f"{len(running)} instance(s) of it still run in {name} ({', '.join(running)}).",
                f"stop them first: `delivery down --env {name} --service {args.name}`.",
            )
        env.services = {k: v for k, v in env.services.items() if k != args.name}
        env.save(name, overwrite=True)
        env.remember()
        removed.append(name)
    if not removed:
        raise ConfigError(
            f"service remove {args.name}", "is not registered in any of those environments."
        )
    print(f"Removed {args.name} from {', '.join(removed)} (its history stays in the ledgers).")
    return EXIT_OK


def add_commands(sub) -> None:
    service = sub.add_parser("service", help="register the services the environments carry")
    verbs = service.add_subparsers(dest="verb", required=True)

    add = verbs.add_parser(
        "add", help="give a service a route in each environment (its router, its database)"
    )
    add.add_argument("service_dir", help="the folder holding its delivery.toml")
    add.add_argument("--env", action="append", help="only this environment (default: all)")
    add.add_argument("--port", action="append", help="ENVIRONMENT=PORT (default: a free one)")
    add.add_argument("--strategy", help="its rollout strategy: blue-green, canary or rolling")
    add.add_argument(
        "--instances", type=int, help="instances of each release (at least the environment's)"
    )
    add.add_argument(
        "--approvers",
        help="who may approve it, comma-separated (among the environment's approvers)",
    )
    add.add_argument(
        "--requires-approval",
        action="store_true",
        help="a person approves each release even where the environment does not ask",
    )
    add.add_argument("--bake-s", type=float, help="a longer bake window (never shorter)")
    add.add_argument("--step-pause-s", type=float, help="longer analysis steps (never shorter)")
    add.add_argument(
        "--no-database",
        action="store_true",
        help="no database of its own (default: one in each environment's local "
        "PostgreSQL, where it runs one)",
    )
    add.set_defaults(func=cmd_add)

    listing = verbs.add_parser("list", help="the services of each environment (from snapshots)")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--state-dir", help="where the environments' snapshots are")
    listing.set_defaults(func=cmd_list)

    remove = verbs.add_parser("remove", help="take a service's route away (none may run)")
    remove.add_argument("name")
    remove.add_argument("--env", action="append", help="only this environment (default: all)")
    remove.set_defaults(func=cmd_remove)
