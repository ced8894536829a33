"""``delivery demo``: two services delivered through one staging and one production.

The demo copies examples/hello-service and examples/httpbin-service (or the one folder
``--service`` names) into git repositories of their own under the state folder and commits
their releases, so each delivery really replaces a live release. It creates the blocks it
needs, registers both services (each its own route, router and ledger in each environment;
hello-service its own database), runs the delivery flow for each commit, the two services in
turn (auto-approved, recorded as such), and leaves both running side by side in staging and
production.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.flows.cli.common import EXIT_OK, flags_as_settings, state_dir
from prefect_delivery.tasks.manifest import MANIFEST_NAME, load_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = EXAMPLES / "hello-service"
#: the demo's second service: a third-party application, delivered beside hello-service
SECOND = EXAMPLES / "httpbin-service"
IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", "*.egg-info"
)
GIT_ID = ["-c", "user.name=prefect-delivery demo", "-c", "user.email=demo@localhost"]


class DemoRepo(BaseModel):
    path: str
    #: a fixed author and committer date (git's format, e.g. "1765000000 +0000"): the same
    #: content on the same parents is then the same commit (None: git's clock)
    commit_date: str | None = None

    def git(self, *args: str) -> str:
        env = None
        if self.commit_date:
            env = dict(os.environ, GIT_AUTHOR_DATE=self.commit_date)
            env["GIT_COMMITTER_DATE"] = self.commit_date
        out = subprocess.run(
            ["git", *GIT_ID, "-C", self.path, *args],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        return out.stdout.strip()

    def commit_all(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def prepare_repo(state_dir: Path, source: Path = EXAMPLE) -> DemoRepo:
    """A fresh git repository holding a copy of the sample service."""
    path = state_dir / "demo" / source.name
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(source, path, ignore=IGNORED)
    repo = DemoRepo(path=str(path))
    repo.git("init", "-q", "-b", "main")
    return repo


def set_version(repo: DemoRepo, version: str, greeting: str | None = None) -> None:
    pyproject = Path(repo.path) / "pyproject.toml"
    text = re.sub(
        r'^version = "[^"]+"', f'version = "{version}"', pyproject.read_text(), count=1, flags=re.M
    )
    pyproject.write_text(text)
    if greeting:
        settings = Path(repo.path) / "src" / "hello_service" / "settings.toml"
        settings.write_text(
            re.sub(
                r'^greeting = ".*"$', f'greeting = "{greeting}"', settings.read_text(), flags=re.M
            )
        )


def set_fault(repo: DemoRepo, fault: str) -> None:
    """Bake a fault into the next commit (crash, unhealthy, error:<share>, slow:<s>)."""
    settings = Path(repo.path) / "src" / "hello_service" / "settings.toml"
    settings.write_text(
        re.sub(r'^fault = ".*"$', f'fault = "{fault}"', settings.read_text(), flags=re.M)
    )


def set_build_kind(repo: DemoRepo, kind: str) -> None:
    """Build the next commit as a wheel (process target) or an image (docker target)."""
    manifest = Path(repo.path) / "delivery.toml"
    manifest.write_text(
        re.sub(r'^kind = "[a-z]+"', f'kind = "{kind}"', manifest.read_text(), count=1, flags=re.M)
    )


# ---------------------------------------------------------------------------- the schema change
#: hello-service's migrations, one revision per release (0001 is release 1, ... 0004 release 4)
VERSIONS_DIR = Path("src") / "hello_service" / "migrations" / "versions"
SCHEMA_RELEASES = 4

#: The demo's deliveries when the environments have databases: the name split as it travels.
SCHEMA_DEMO = [
    (1, "1.0.0", "baseline: the people table (id, name); the code reads name"),
    (2, "1.1.0", "expand: first_name/last_name added (nullable); the code still reads name"),
    (3, "1.2.0", "migrate: batched backfill of first_name/last_name; the code reads them"),
    (4, "1.3.0", "contract: people.name dropped, in a release of its own"),
]


def set_schema_release(repo: DemoRepo, n: int, source: Path = EXAMPLE) -> None:
    """Make the next commit hello-service's release ``n`` of the people schema change: the
    revisions 0001..000n (from the example, which holds the final state) and the code mode
    that goes with them: ``people_schema = "name"`` before the migrate (n < 3), ``"split"``
    from it on."""
    if not 1 <= n <= SCHEMA_RELEASES:
        raise ValueError(f"schema release {n} is not one of 1..{SCHEMA_RELEASES}")
    dest = Path(repo.path) / VERSIONS_DIR
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("[0-9][0-9][0-9][0-9]_*.py"):
        old.unlink()
    for revision in sorted((source / VERSIONS_DIR).glob("[0-9][0-9][0-9][0-9]_*.py")):
        if int(revision.name[:4]) <= n:
            shutil.copy2(revision, dest / revision.name)
    settings = Path(repo.path) / "src" / "hello_service" / "settings.toml"
    mode = "name" if n < 3 else "split"
    settings.write_text(
        re.sub(
            r'^people_schema = ".*"$', f'people_schema = "{mode}"', settings.read_text(), flags=re.M
        )
    )


def reset_environment(name: str, services: list[str]) -> list[str]:
    """Before a demo run: stop what an earlier run left (every instance of the environment)
    and empty the demo's services' databases, so the schema change starts from nothing
    again. Returns what it did."""
    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.flows.cli.service import database_name

    env = Environment.load(name)
    done = []
    for instance in env.target.list(env.name):
        env.target.stop(instance, timeout_s=5)
        done.append(f"stopped {instance.id}")
    for service in services:
        if service not in env.services:
            continue
        scoped = env.for_service(service)
        cluster = scoped.database.cluster() if scoped.database else None
        if cluster is not None and scoped.database.current_revision(env.name) is not None:
            cluster.reset_database(database_name(service), database_name(service))
            done.append(f"emptied {service}'s {env.name} database")
    return done


# ---------------------------------------------------------------------------- the command
class Delivery(BaseModel):
    """One delivery of the demo: a commit of one of its services."""

    service: str  # the service's name
    hello: bool  # hello-service's own releases (versions, the schema change), or plain commits
    repo: DemoRepo
    number: int
    version: str | None
    what: str


def _hello_plan(repo: DemoRepo, databases: bool) -> list[Delivery]:
    releases = (
        SCHEMA_DEMO
        if databases
        else [(1, "1.0.0", "hello-service"), (2, "1.1.0", "a new greeting over release 1")]
    )
    return [
        Delivery(service="hello-service", hello=True, repo=repo, number=n, version=v, what=w)
        for n, v, w in releases
    ]


def _plain_plan(repo: DemoRepo, name: str) -> list[Delivery]:
    return [
        Delivery(
            service=name, hello=False, repo=repo, number=1, version=None, what=f"{name} as it is"
        ),
        Delivery(
            service=name,
            hello=False,
            repo=repo,
            number=2,
            version=None,
            what="a second commit, delivered over it",
        ),
    ]


def _interleaved(first: list[Delivery], second: list[Delivery]) -> list[Delivery]:
    """The two services in turn: each delivery of one runs with the other live beside it."""
    order: list[Delivery] = []
    for n in range(max(len(first), len(second))):
        order += first[n : n + 1] + second[n : n + 1]
    return order


def _commit(delivery: Delivery, databases: bool) -> str:
    repo = delivery.repo
    if delivery.hello:
        if databases:
            set_schema_release(repo, delivery.number)
            set_version(repo, delivery.version)
        else:
            set_version(
                repo, delivery.version, greeting="Hello again" if delivery.number > 1 else None
            )
    elif delivery.number > 1:
        (Path(repo.path) / "DELIVERY_DEMO").write_text(f"release {delivery.number}\n")
    return repo.commit_all(f"release {delivery.number}: {delivery.what}")


def _blocks(args: argparse.Namespace, state: Path, databases: bool) -> None:
    from prefect_delivery.flows.cli.setup import LocalSetup, container_options, create_local_blocks

    create_local_blocks(
        LocalSetup(
            state_dir=str(state),
            staging_port=args.staging_port,
            production_port=args.production_port,
            staging_strategy=args.strategy,
            production_strategy=args.strategy,
            bake_s=args.bake_s,
            keep_previous_s=0,
            instances=args.instances,
            step_pause_s=args.step_pause_s,
            analysis_interval_s=args.analysis_interval_s,
            # the demo approves production itself (it has nobody to ask): its blocks allow it
            allow_auto_approval=True,
            databases=databases,
            **container_options(args),
        )
    )


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from prefect_delivery.flows.cli.run import run_delivery
    from prefect_delivery.flows.cli.service import add_service
    from prefect_delivery.flows.cli.status import print_status
    from prefect_delivery.tasks.status import status_report

    started = time.perf_counter()
    state = state_dir(args.state_dir)
    service = _own_service(args.service)
    # the schema change is hello-service's; another service is delivered without databases
    databases = not args.no_database and service is None
    # the second service is a wheel (no Dockerfile): beside hello-service on the process path
    second = service is None and args.target == "process" and not args.one_service
    with flags_as_settings("delivery demo's options"):
        _blocks(args, state, databases)
    names = ["staging", "production"]
    repo = prepare_repo(state) if service is None else prepare_repo(state, service)
    if args.target == "docker":
        set_build_kind(repo, "image")
    main_name = load_manifest(Path(repo.path)).service.name
    services = [main_name]
    if service is not None:
        plan = _plain_plan(repo, main_name)
        print(
            f"Demo: delivering {main_name} from {service} (no databases: the schema change is "
            "hello-service's)"
        )
    else:
        plan = _hello_plan(repo, databases)
        if databases:
            print(
                "Demo: each environment has its own PostgreSQL, and hello-service its own "
                "database in it; hello-service splits people.name into first_name/last_name "
                "over releases 2-4 (expand, migrate, contract), each phase applied to its "
                "database before the code that needs it"
            )
    cleaned = [what for name in names for what in reset_environment(name, [main_name])]
    if cleaned:
        print(f"Demo: starting from a clean slate ({'; '.join(cleaned)})")
    urls = {main_name: add_service(repo.path, names, database=databases)}
    if second:
        other = prepare_repo(state, SECOND)
        other_name = load_manifest(Path(other.path)).service.name
        urls[other_name] = add_service(other.path, names, database=False)
        services.append(other_name)
        plan = _interleaved(plan, _plain_plan(other, other_name))
        print(
            f"Demo: {other_name} (httpbin from PyPI, no database) is delivered beside "
            f"{main_name} through the same staging and production, each with its own route, "
            "router, releases and history:"
        )
    for name in services:
        print("  " + name + ": " + ", ".join(f"{e} {u}" for e, u in urls[name].items()))
    for item in plan:
        sha = _commit(item, databases)
        shown = f"{item.version}, " if item.version else ""
        print(
            f"\nDemo: delivering {item.service} release {item.number} ({shown}commit "
            f"{sha[:12]}): {item.what}"
        )
        summary, code = run_delivery(item.repo.path, sha, names, True, "artifacts", None)
        if code != EXIT_OK:
            return code
        if databases and item.hello:
            for line in _schema_lines(names):
                print(line)
    last = (
        plan[-1]
        if service is not None
        else next(d for d in reversed(plan) if d.service == main_name)
    )
    shown = f" ({last.version})" if last.version else ""
    print(
        f"\nBoth environments are running {main_name} release {last.number}{shown} from the "
        "same digest" + (f", and {services[1]} release 2 beside it" if second else "") + ":"
    )
    print_status(status_report(names))
    print(f"\nDemo finished in {time.perf_counter() - started:.1f}s.")
    print(
        "\nTry: curl "
        + urls[main_name]["production"]
        + ("/api/people" if service is None else "/")
        + (f"   ·   curl {urls[services[1]]['production']}/get" if second else "")
        + "   ·   `delivery status`   ·   `delivery down` to stop everything"
    )
    return EXIT_OK


def _own_service(path: str | None) -> Path | None:
    """``--service PATH``: a service folder with a delivery.toml, checked before anything runs."""
    if not path:
        return None
    folder = Path(path).expanduser().resolve()
    if not (folder / MANIFEST_NAME).is_file():
        raise ConfigError(
            "--service",
            f"{path} has no {MANIFEST_NAME}.",
            "point --service at a service folder with a delivery.toml (see "
            "examples/httpbin-service), or leave it out for hello-service.",
        )
    load_manifest(folder)  # a bad manifest is reported now, with its field and the fix
    return folder


def _schema_lines(names: list[str]) -> list[str]:
    """Per environment: hello-service's database revision and which columns its code reads."""
    import httpx

    from prefect_delivery.blocks import httpclient
    from prefect_delivery.blocks.environment import Environment

    lines = []
    for name in names:
        env = Environment.load(name).for_service("hello-service")
        revision = env.database.current_revision(name) if env.database else None
        try:
            body = httpclient.get(env.url + "/api/people", timeout=5).json()
            reads = f"code reads {body.get('schema')}, {len(body.get('people', []))} people"
        except (httpx.HTTPError, ValueError) as exc:
            reads = f"/api/people did not answer ({type(exc).__name__})"
        lines.append(f"  {name:<11} schema at {revision or 'base'}; {reads}")
    return lines


def add_commands(sub) -> None:
    from prefect_delivery.flows.cli.setup import local_options

    demo = sub.add_parser(
        "demo",
        help="two services through one staging and production: hello-service release after "
        "release (with databases: the people schema change, expand / migrate / contract, "
        "releases 1-4; --no-database: releases 1 and 2) and httpbin beside it",
    )
    local_options(demo, short=True)
    demo.add_argument(
        "--service",
        help="deliver this service folder (with a delivery.toml) alone instead: two releases, "
        "no databases (e.g. examples/httpbin-service)",
    )
    demo.add_argument(
        "--one-service",
        action="store_true",
        help="hello-service alone (without httpbin beside it)",
    )
    demo.set_defaults(func=cmd_demo)
