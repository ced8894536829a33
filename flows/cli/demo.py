"""``delivery demo``: deliver hello-service release after release, on this machine.

The demo copies examples/hello-service (or the folder ``--service`` names) into a git
repository of its own under the state folder and commits its releases, so each delivery really
replaces a live release. It creates the blocks it needs, runs the delivery flow for each commit
(auto-approved, recorded as such) and leaves staging and production running.
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
from prefect_delivery.flows.cli.common import EXIT_OK, state_dir
from prefect_delivery.tasks.manifest import MANIFEST_NAME, load_manifest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello-service"
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


def reset_environment(name: str) -> list[str]:
    """Before a demo run: stop what an earlier run left (instances) and empty the database, so
    the schema change starts from nothing again. Returns what it did."""
    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.flows.cli.setup import APP_DATABASE

    env = Environment.load(name)
    done = []
    for instance in env.target.list(env.name):
        env.target.stop(instance, timeout_s=5)
        done.append(f"stopped {instance.id}")
    cluster = env.database.cluster() if env.database else None
    if cluster is not None and env.database.current_revision(env.name) is not None:
        cluster.reset_database(APP_DATABASE, APP_DATABASE)
        done.append(f"emptied the {env.name} database")
    return done


# ---------------------------------------------------------------------------- the command
def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from prefect_delivery.flows.cli.run import run_delivery
    from prefect_delivery.flows.cli.setup import LocalSetup, container_options, create_local_blocks
    from prefect_delivery.flows.cli.status import print_status
    from prefect_delivery.tasks.status import status_report

    started = time.perf_counter()
    state = state_dir(args.state_dir)
    service = _own_service(args.service)
    # the schema change is hello-service's; another service is delivered without databases
    databases = not args.no_database and service is None
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
            step_pause_s=args.step_pause_s,
            analysis_interval_s=args.analysis_interval_s,
            # the demo approves production itself (it has nobody to ask): its blocks allow it
            allow_auto_approval=True,
            databases=databases,
            **container_options(args),
        )
    )
    names = ["staging", "production"]
    cleaned = [what for name in names for what in reset_environment(name)]
    if cleaned:
        print(f"Demo: starting from a clean slate ({'; '.join(cleaned)})")
    repo = prepare_repo(state) if service is None else prepare_repo(state, service)
    if args.target == "docker":
        set_build_kind(repo, "image")
    if service is not None:
        name = load_manifest(service).service.name
        plan = [(1, None, f"{name} as it is"), (2, None, "a second commit, delivered over it")]
        print(
            f"Demo: delivering {name} from {service} (no databases: the schema change is "
            "hello-service's)"
        )
    elif databases:
        plan = SCHEMA_DEMO
        print(
            "Demo: each environment has its own PostgreSQL; hello-service splits people.name "
            "into first_name/last_name over releases 2-4 (expand, migrate, contract), each "
            "phase applied to the database before the code that needs it"
        )
    else:
        plan = [(1, "1.0.0", "hello-service"), (2, "1.1.0", "a new greeting over release 1")]
    for number, version, what in plan:
        if service is not None:
            if number > 1:
                (Path(repo.path) / "DELIVERY_DEMO").write_text(f"release {number}\n")
        elif databases:
            set_schema_release(repo, number)
            set_version(repo, version)
        else:
            set_version(repo, version, greeting="Hello again" if number > 1 else None)
        sha = repo.commit_all(f"release {number}: {what}")
        shown = f"{version}, " if version else ""
        print(f"\nDemo: delivering release {number} ({shown}commit {sha[:12]}): {what}")
        summary, code = run_delivery(repo.path, sha, names, True, "artifacts", None)
        if code != EXIT_OK:
            return code
        if databases:
            for line in _schema_lines(names):
                print(line)
    number, version, _ = plan[-1]
    shown = f" ({version})" if version else ""
    print(f"\nBoth environments are running release {number}{shown} from the same digest:")
    print_status(status_report(names))
    print(f"\nDemo finished in {time.perf_counter() - started:.1f}s.")
    print(
        "\nTry: curl "
        + urls["production"]
        + ("/api/people" if service is None else "/")
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
    """Per environment: the database's revision and which columns the live code reads."""
    import httpx

    from prefect_delivery.blocks import httpclient
    from prefect_delivery.blocks.environment import Environment

    lines = []
    for name in names:
        env = Environment.load(name)
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
        help="deliver hello-service release after release (with databases: the people schema "
        "change, expand / migrate / contract, releases 1-4; --no-database: releases 1 and 2)",
    )
    local_options(demo, short=True)
    demo.add_argument(
        "--service",
        help="deliver this service folder (with a delivery.toml) instead of hello-service: "
        "two releases, no databases (e.g. examples/httpbin-service)",
    )
    demo.set_defaults(func=cmd_demo)
