"""Create the blocks a local pipeline needs: an artifact store and two environments.

Used by ``delivery demo`` and ``delivery setup``; a team with its own blocks skips this. With
``databases`` (the default) each environment also gets a PostgreSQL database of its own: a
local cluster under the state folder (``<state>/postgres/<environment>``), created once,
started here, kept across runs, stopped by ``delivery down``.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from prefect_delivery.blocks.artifacts import ArtifactStore
from prefect_delivery.blocks.database import PostgresDatabase
from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.registry import ImageRegistry
from prefect_delivery.blocks.routing.haproxy import HAProxyRouter
from prefect_delivery.blocks.settings import (
    PromotionPolicy,
    StrategySettings,
    VerificationSettings,
)
from prefect_delivery.blocks.targets.docker import DockerTarget, scope_for
from prefect_delivery.blocks.targets.process import ProcessTarget
from prefect_delivery.flows.cli.common import EXIT_OK, flags_as_settings, state_dir


class LocalSetup(BaseModel):
    """What `delivery setup` writes. The defaults are what production deserves: two instances
    per environment (one is the seed's named anti-pattern), an hour's bake with the previous
    release kept warm for it, 15-minute canary steps, staging as production's upstream, and
    a person's approval (nobody's own commit, never automatic) before production.
    `delivery demo` and the tests pass their short timings explicitly."""

    state_dir: str
    staging_port: int = 18081
    production_port: int = 18082
    staging_strategy: str = "blue-green"
    production_strategy: str = "blue-green"
    bake_s: float = 3600.0
    keep_previous_s: float = 3600.0
    instances: int = 2
    step_pause_s: float = 900.0
    analysis_interval_s: float = 5.0
    production_requires_approval: bool = True
    approvers: list[str] = []
    allow_self_approval: bool = False
    allow_auto_approval: bool = False
    target: Literal["process", "docker"] = "process"
    registry: str = "127.0.0.1:5000"  # docker: where images are pushed
    base_image: str | None = None  # docker: BASE_IMAGE build arg (None: the Dockerfile's)
    databases: bool = True  # a local PostgreSQL cluster (and database) per environment


def environment(
    name: str,
    port: int,
    state_dir: str,
    strategy: StrategySettings,
    bake_s: float,
    requires_approval: bool,
    verification: VerificationSettings | None = None,
    target: ProcessTarget | DockerTarget | None = None,
    database: PostgresDatabase | None = None,
    promotion: PromotionPolicy | None = None,
) -> Environment:
    policy = promotion or PromotionPolicy()
    if requires_approval and not policy.requires_approval:
        policy = policy.model_copy(update={"requires_approval": True})
    return Environment(
        name=name,
        target=target or ProcessTarget(state_dir=state_dir),
        router=HAProxyRouter(name=name, frontend_port=port, state_dir=state_dir),
        strategy=strategy,
        verification=verification or VerificationSettings(),
        bake_s=bake_s,
        promotion=policy,
        state_dir=state_dir,
        database=database,
    )


#: The application database (and its owner role) of every local cluster.
APP_DATABASE = "app"


def local_database(state_dir: str, name: str) -> PostgresDatabase:
    """The environment's own PostgreSQL: a cluster in ``<state>/postgres/<name>`` (created if
    missing, started), a database and role ``app``. The role's password is random; it is kept
    only in the block, and reused when the environment's block already holds it."""
    from prefect_delivery.blocks.database.local import LocalCluster

    cluster = LocalCluster(Path(state_dir) / "postgres" / name)
    try:
        created = cluster.init()
    except ConfigError as exc:  # no PostgreSQL server binaries
        raise ConfigError(
            exc.where, exc.problem, f"{exc.fix} Or run without databases: --no-database."
        ) from None
    cluster.start()
    previous = _saved_database(name)
    if not created and previous is not None and previous.local_cluster == str(cluster.folder):
        cluster.ensure_database(APP_DATABASE, APP_DATABASE, None)
        url = previous.url
    else:
        password = secrets.token_urlsafe(18)
        cluster.ensure_database(APP_DATABASE, APP_DATABASE, password)
        url = cluster.url(APP_DATABASE, APP_DATABASE, password)
    return PostgresDatabase(url=url, local_cluster=str(cluster.folder))


def _saved(name: str) -> Environment | None:
    try:
        return Environment.load(name)
    except Exception:  # noqa: BLE001 - no such block yet (or an older schema): make a new one
        return None


def _saved_database(name: str) -> PostgresDatabase | None:
    saved = _saved(name)
    return saved.database if saved else None


def _strategy(kind: str, setup: LocalSetup) -> StrategySettings:
    from pydantic import ValidationError

    from prefect_delivery.blocks.errors import ConfigError
    from prefect_delivery.tasks.manifest import describe_validation_error

    try:
        return StrategySettings(
            kind=kind,
            instances=setup.instances,
            keep_previous_s=setup.keep_previous_s,
            step_pause_s=setup.step_pause_s,
            analysis_interval_s=setup.analysis_interval_s,
        )
    except ValidationError as exc:
        raise ConfigError(
            "--strategy/--instances/--keep-previous-s",
            describe_validation_error("", exc),
            "e.g. --strategy canary (blue-green, canary or rolling); rolling needs --instances 2 "
            "or more",
        ) from None


def create_local_blocks(setup: LocalSetup) -> dict[str, str]:
    """Save 'artifacts', 'staging' and 'production' blocks; returns environment -> the first
    frontend port's URL (where the first service registered gets its route). The services
    registered before (``delivery service add``) keep their routes.

    Every setting is checked before the first block is saved: bad input changes nothing."""
    state = str(Path(setup.state_dir).resolve())
    strategies = {
        name: _strategy(kind, setup)
        for name, kind in (
            ("staging", setup.staging_strategy),
            ("production", setup.production_strategy),
        )
    }
    target = None
    registry = None
    if setup.target == "docker":
        registry = ImageRegistry(
            address=setup.registry,
            build_args={"BASE_IMAGE": setup.base_image} if setup.base_image else {},
        )
        registry.save("registry", overwrite=True)
        target = DockerTarget(registry=registry, scope=scope_for(state))
        target.save("docker", overwrite=True)  # named: it references `registry`, which
        # can then get credentials later and both environments see them
    ArtifactStore(root=str(Path(state) / "artifacts"), registry=registry).save(
        "artifacts", overwrite=True
    )
    policies = {
        "staging": PromotionPolicy(),
        "production": PromotionPolicy(
            upstream="staging",
            requires_approval=setup.production_requires_approval,
            approvers=setup.approvers,
            allow_self_approval=setup.allow_self_approval,
            allow_auto_approval=setup.allow_auto_approval,
        ),
    }
    urls = {}
    for name, port, bake in (
        ("staging", setup.staging_port, 0.0),
        ("production", setup.production_port, setup.bake_s),
    ):
        database = local_database(state, name) if setup.databases else None
        env = environment(
            name,
            port,
            state,
            strategies[name],
            bake,
            False,
            target=target,
            database=database,
            promotion=policies[name],
        )
        saved = _saved(name)
        if saved is not None:  # setup again: the services registered here keep their routes
            env.services = saved.services
        env.save(name, overwrite=True)
        env.remember()  # the snapshot `delivery status` and a break-glass rollback read
        urls[name] = env.url
    return urls


#: The offline base image .ci/docker/base-image.sh pushes (python + uvicorn + starlette).
LOCAL_WEB_BASE = "prefect-delivery/python-web:3.11"


def pick_base_image(registry: str) -> str | None:
    """``<registry>/prefect-delivery/python-web:3.11`` when the engine or the registry has it
    (a machine set up by .ci/docker/up.sh: offline builds), else None: the Dockerfile's own
    default, the official python image from Docker Hub."""
    import docker

    candidate = f"{registry}/{LOCAL_WEB_BASE}"
    try:
        client = docker.from_env(timeout=10)
    except docker.errors.DockerException:
        return None
    try:
        try:
            client.images.get(candidate)
            return candidate
        except docker.errors.ImageNotFound:
            pass
        try:
            client.api.inspect_distribution(candidate)
            return candidate
        except docker.errors.APIError:
            return None
    finally:
        client.close()


# ---------------------------------------------------------------------------- the commands
def container_options(args: argparse.Namespace) -> dict:
    """LocalSetup fields of --target/--registry/--base-image ('auto': offline base if here)."""
    if args.target != "docker":
        return {"target": args.target}
    from pydantic import ValidationError

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
    with flags_as_settings("delivery setup's options"):
        urls = _setup(args)
    for name, url in urls.items():
        print(f"{name:<11} services' frontends from {url}")
    print("Next: register each service once, `delivery service add SERVICE_DIR`, then deliver it.")
    if not args.no_database:
        state = state_dir(args.state_dir)
        print(
            f"databases   a local PostgreSQL per environment in {state / 'postgres'} (running; "
            "`delivery status` shows their schema, `delivery down` stops them)"
        )
    return EXIT_OK


def _setup(args: argparse.Namespace) -> dict[str, str]:
    return create_local_blocks(
        LocalSetup(
            state_dir=str(state_dir(args.state_dir)),
            staging_port=args.staging_port,
            production_port=args.production_port,
            staging_strategy=args.strategy,
            production_strategy=args.strategy,
            bake_s=args.bake_s,
            keep_previous_s=args.keep_previous_s,
            instances=args.instances,
            step_pause_s=args.step_pause_s,
            analysis_interval_s=args.analysis_interval_s,
            production_requires_approval=not args.no_approval,
            approvers=[a for a in (args.approvers or "").split(",") if a.strip()],
            allow_self_approval=args.allow_self_approval,
            allow_auto_approval=args.allow_auto_approval,
            databases=not args.no_database,
            **container_options(args),
        )
    )


def local_options(p: argparse.ArgumentParser, short: bool = False) -> None:
    """Options of `setup` and `demo`; ``short``: the demo's timings (seconds, not hours)."""
    p.add_argument(
        "--state-dir", help="runtime state (default: $DELIVERY_STATE_DIR or ./.delivery)"
    )
    p.add_argument("--staging-port", type=int, default=18081)
    p.add_argument("--production-port", type=int, default=18082)
    p.add_argument("--strategy", default="blue-green", help="blue-green, canary or rolling")
    p.add_argument("--instances", type=int, default=2, help="instances of each release")
    p.add_argument(
        "--bake-s", type=float, default=5.0 if short else 3600.0, help="production bake window"
    )
    p.add_argument(
        "--step-pause-s",
        type=float,
        default=5.0 if short else 900.0,
        help="analysis window of each canary or rolling step",
    )
    p.add_argument(
        "--analysis-interval-s",
        type=float,
        default=1.0 if short else 5.0,
        help="how often an analysis looks at its metrics",
    )
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


def add_commands(sub) -> None:
    setup = sub.add_parser("setup", help="create local blocks: artifacts, staging, production")
    local_options(setup)
    setup.add_argument(
        "--keep-previous-s",
        type=float,
        default=3600,
        help="how long the previous release stays warm after a cutover (it always does for "
        "the bake)",
    )
    setup.add_argument("--no-approval", action="store_true", help="production needs no approval")
    setup.add_argument(
        "--approvers", help="who may approve production, comma-separated (default: anyone)"
    )
    setup.add_argument(
        "--allow-self-approval",
        action="store_true",
        help="let a commit's author approve their own release for production",
    )
    setup.add_argument(
        "--allow-auto-approval",
        action="store_true",
        help="let a run's --auto-approve satisfy production's approval (demos, trusted CI)",
    )
    setup.set_defaults(func=cmd_setup)
