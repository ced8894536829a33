"""What a delivery would do, said without doing it (``delivery plan``): a dry run.

It reads, and only reads: the commit (git), its manifest and migrations (the commit's tree
exported to a temporary folder, removed after), each environment's snapshot (its policy and
strategy), what runs there now (the router's runtime API and the target's records) and its
ledger (verified releases, the database's last revision). It never starts or stops an
instance, never sets a weight, never connects to a database, never appends to a ledger and
imports no Prefect, so it answers in well under a second.

Durations are what the environment's settings make them: a lower bound (every analysis
passes on its first window) and an upper bound (every window extended as far as allowed,
every start takes its whole timeout, the approval waits for its timeout).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from prefect_delivery.blocks.environment_view import EnvironmentView
from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.settings import (
    PromotionPolicy,
    StrategySettings,
    VerificationSettings,
)
from prefect_delivery.tasks import strategies
from prefect_delivery.tasks.schema_gates import ReleaseSchema, contract_blockers, pending_from
from prefect_delivery.tasks.source import SourceRef, export_tree, manifest_at, resolve_source

DEFAULT_ENVIRONMENTS = ["staging", "production"]  # the delivery flow's default


class PlannedStep(BaseModel):
    step: str
    new_percent: int | None = None  # traffic on the new release after this step
    weights: dict[str, list[int]] = Field(default_factory=dict)  # new/stable router weights
    min_s: float = 0.0
    max_s: float = 0.0


class PlannedMigration(BaseModel):
    revision: str
    phase: str | None
    drops: list[str] = Field(default_factory=list)
    gates: list[str] = Field(default_factory=list)


class PlannedEnvironment(BaseModel):
    name: str
    url: str
    action: str  # "deploy", "already live and verified"
    policy: str
    upstream: str | None
    approval: str | None  # who must approve, or None
    serving: str | None  # the release serving now (label)
    strategy: str
    steps: list[PlannedStep] = Field(default_factory=list)
    bake_s: float = 0.0
    database: str | None = None  # masked URL
    schema_at: str | None = None  # the revision the ledger last saw
    migrations: list[PlannedMigration] = Field(default_factory=list)
    min_s: float = 0.0
    max_s: float = 0.0


class DeliveryPlan(BaseModel):
    service: str
    commit: str
    author: str | None
    build: str
    tests: str
    stages: list[str]
    environments: list[PlannedEnvironment]
    approval_timeout_s: float
    min_s: float
    max_s: float
    changes: str = "nothing: this is a plan"


# ---------------------------------------------------------------------------- reading
def _schema(source: SourceRef, label: str) -> ReleaseSchema:
    """The commit's migrations, read from its tree in a temporary folder."""
    from prefect_delivery.migrations_lab.errors import LabConfigError
    from prefect_delivery.migrations_lab.phases import read_plan
    from prefect_delivery.migrations_lab.project import AlembicProject, find_alembic_ini

    schema = ReleaseSchema(label=label, digest="(not built yet)")
    with tempfile.TemporaryDirectory(prefix="delivery-plan-") as folder:
        root = export_tree(source, Path(folder) / "tree")
        ini = find_alembic_ini(root)
        if ini is None:
            return schema
        try:
            schema.plan = read_plan(AlembicProject(ini))
        except LabConfigError as exc:
            raise ConfigError(
                f"migrations of {label} ({exc.where})", exc.problem, exc.fix
            ) from None
        schema.project = str(ini.relative_to(root))
    return schema


def _views(names: list[str] | None, state_dirs: list[str]) -> list[EnvironmentView]:
    known = {v.name: v for v in EnvironmentView.recall_all(state_dirs)}
    wanted = names or [n for n in DEFAULT_ENVIRONMENTS if n in known] or sorted(known)
    if not wanted:
        raise ConfigError(
            "environments",
            f"none has a snapshot in the state folders ({', '.join(state_dirs)}).",
            "run `delivery setup` (or `delivery demo`) first, or pass --state-dir.",
        )
    missing = [n for n in wanted if n not in known]
    if missing:
        raise ConfigError(
            f"environment {missing[0]!r}",
            f"has no snapshot in the state folders ({', '.join(state_dirs)}).",
            "pass --state-dir (or set DELIVERY_STATE_DIR) to the folder `delivery setup` used; "
            "known here: " + (", ".join(sorted(known)) or "none"),
        )
    if len(set(wanted)) != len(wanted):
        raise ConfigError("--env", f"{wanted} names an environment twice.", "name each once.")
    return [known[n] for n in wanted]


# ---------------------------------------------------------------------------- deciding
def _steps(
    settings: StrategySettings,
    verification: VerificationSettings,
    has_stable: bool,
    stable: int,
    startup_s: float,
) -> list[PlannedStep]:
    planned = []
    for step in strategies.plan(settings, has_stable):
        item = PlannedStep(step=strategies.describe(step))
        match step:
            case strategies.Launch(count=count):
                item.max_s = startup_s * count  # each starts and passes its health check
            case strategies.Shift(percent=percent):
                item.new_percent = percent
                item.weights = {
                    "new": strategies.weights_for_share(percent, settings.instances),
                    "stable": strategies.weights_for_share(100 - percent, stable),
                }
            case strategies.Replace(index=index, total=total):
                item.new_percent = round(100 * (index + 1) / total)
            case strategies.Analyze(window_s=window, max_extensions=extensions):
                item.min_s, item.max_s = window, window * (1 + extensions)
            case strategies.Verify():
                # requests at the given concurrency, each at most its timeout
                rounds = -(-verification.requests // verification.concurrency)
                item.max_s = rounds * verification.timeout_s
        planned.append(item)
    return planned


def _approval(policy: PromotionPolicy, author: str | None) -> str | None:
    if not policy.requires_approval:
        return None
    who = ", ".join(policy.approvers) if policy.approvers else "anyone with access to the UI"
    text = f"approval by {who}"
    if author and not policy.allow_self_approval:
        text += f"; not by the author ({author})"
    return text


def _unpacked_schema(state_dir: str, release) -> ReleaseSchema | None:
    """A live release's migrations, if a delivery already unpacked its artifact here (read
    only: the plan never unpacks one)."""
    from prefect_delivery.migrations_lab.errors import LabConfigError
    from prefect_delivery.migrations_lab.phases import read_plan
    from prefect_delivery.migrations_lab.project import AlembicProject, find_alembic_ini

    folder = Path(state_dir) / "schemas" / release.digest.split(":", 1)[-1][:40]
    if not (folder / ".complete").exists():
        return None
    schema = ReleaseSchema(label=release.label, digest=release.digest)
    ini = find_alembic_ini(folder)
    if ini is not None:
        try:
            schema.project, schema.plan = str(ini), read_plan(AlembicProject(ini))
        except LabConfigError:
            return None
    return schema


def _contract_verdict(
    view: EnvironmentView, schema: ReleaseSchema, pending: list[str], others: list
) -> str:
    if not others:
        return "passes: no other release runs here"
    running, unknown = [], []
    for release, role in others:
        found = _unpacked_schema(view.state_dir, release)
        if found is None:
            unknown.append(release.label)
        else:
            running.append((found, role))
    blockers = contract_blockers(schema.plan, pending, running)
    if blockers:
        return "would refuse: " + "; ".join(
            f"{b.release} {b.role} and uses {b.item} ({b.reason})" for b in blockers
        )
    if unknown:
        return f"checked at run time for {', '.join(unknown)} (artifact not unpacked here yet)"
    return "passes: " + ", ".join(f"{s.label} ({r})" for s, r in running) + " no longer use it"


def _migrations(
    view: EnvironmentView, schema: ReleaseSchema, others: list
) -> tuple[str | None, list[PlannedMigration]]:
    entry = view.ledger().last("migrated")
    current = (
        str(entry.details["to_revision"]) if entry and entry.details.get("to_revision") else None
    )
    if schema.plan is None:
        return current, []
    pending = pending_from(schema, current, view.name)
    planned = []
    for revision in pending:
        info = schema.plan.get(revision)
        gates = ["rehearsed up and down on an ephemeral PostgreSQL first"]
        if info.phase == "contract":
            verdict = _contract_verdict(view, schema, [revision], others)
            gates.append(
                f"schema gate (no release that uses {', '.join(info.drops)} may serve or be "
                f"kept warm): {verdict}"
            )
            gates.append("after it: no rollback to a release that uses what it drops")
        planned.append(
            PlannedMigration(revision=revision, phase=info.phase, drops=info.drops, gates=gates)
        )
    return current, planned


def _environment(
    view: EnvironmentView, source: SourceRef, schema: ReleaseSchema, startup_s: float
) -> PlannedEnvironment:
    policy = PromotionPolicy.model_validate(view.promotion)
    settings = StrategySettings.model_validate(view.strategy)
    verification = VerificationSettings.model_validate(view.block.get("verification") or {})
    live = view.observe()
    serving = live.serving()
    verified = {r.digest for r in view.ledger().verified_releases()}
    stable = [
        li.instance
        for li in live.instances
        if li.instance.alive and li.instance.release.digest in verified and li.weight > 0
    ]
    roles: dict[str, tuple] = {}
    for li in live.instances:
        other = li.instance.release
        if li.instance.alive and other.commit != source.commit:
            role = "serves" if li.weight > 0 else "keeps warm for rollback"
            if roles.get(other.digest, (None, ""))[1] != "serves":
                roles[other.digest] = (other, role)
    others = list(roles.values())
    already = serving is not None and serving.commit == source.commit and serving.digest in verified
    planned = PlannedEnvironment(
        name=view.name,
        url=view.url,
        action="already live and verified: nothing to deploy" if already else "deploy",
        policy=policy.describe(),
        upstream=policy.upstream,
        approval=_approval(policy, source.author),
        serving=serving.label if serving else None,
        strategy=f"{settings.kind} x{settings.instances}",
        bake_s=float(view.block.get("bake_s") or 0.0),
        database=(view.database or {}).get("masked_url"),
    )
    if view.database:
        planned.schema_at, planned.migrations = _migrations(view, schema, others)
    if already:
        return planned
    has_stable = bool(stable)
    planned.steps = _steps(settings, verification, has_stable, len(stable), startup_s)
    planned.min_s = sum(s.min_s for s in planned.steps) + planned.bake_s
    planned.max_s = sum(s.max_s for s in planned.steps) + planned.bake_s
    return planned


def plan_delivery(
    service_dir: str,
    commit: str | None,
    names: list[str] | None,
    state_dirs: list[str],
    approval_timeout_s: float = 3600.0,
    service: str | None = None,
) -> DeliveryPlan:
    """The plan of a delivery of ``commit`` of the service in ``service_dir``, from that
    service's part of each environment (its router, instances and ledger only)."""
    views = _views(names, state_dirs)  # first: a wrong environment is said before git runs
    source = resolve_source(service_dir, commit)
    manifest = manifest_at(source)
    name = manifest.service.name
    if service and service != name:
        raise ConfigError(
            f"--service {service}",
            f"{service_dir} holds the service {name!r} (its delivery.toml), not {service!r}.",
            "pass the folder of the service you mean, or leave --service out.",
        )
    views = [v.for_service(name) for v in views]  # a service with no route: said here
    label = f"{name} ({source.commit[:10]})"
    schema = _schema(source, label)
    envs = [_environment(v, source, schema, manifest.run.startup_timeout_s) for v in views]
    stages = ["build", "test"]
    previous = None
    for env in envs:
        for upstream in dict.fromkeys(u for u in (previous, env.upstream) if u):
            stages.append(f"check {upstream} verified it")
        if env.approval and env.action == "deploy":
            stages.append(f"approval {env.name}")
        if env.migrations:
            stages.append(f"migrate {env.name}")
        stages.append(env.name if env.action == "deploy" else f"{env.name} (skipped: live)")
        if manifest.checks is not None and env.action == "deploy":
            stages.append(f"end-to-end checks in {env.name}: `{' '.join(manifest.checks.command)}`")
        if env.bake_s and env.action == "deploy":
            stages.append(f"monitor {env.name} ({env.bake_s:g}s bake)")
        previous = env.name
    approvals = sum(1 for e in envs if e.approval and e.action == "deploy")
    build = manifest.build
    return DeliveryPlan(
        service=manifest.service.name,
        commit=source.commit,
        author=source.author,
        build=(
            "bundle (the wheel and its locked dependencies)" if build.kind == "wheel" else "image"
        )
        + f" built once from {source.commit[:10]} (reused if the artifact store has it)",
        tests=f"{' '.join(manifest.test.paths)} in parallel shards, timeout "
        f"{manifest.test.timeout_s:g}s (skipped if this commit and digest passed before)",
        stages=stages,
        environments=envs,
        approval_timeout_s=approval_timeout_s,
        min_s=sum(e.min_s for e in envs),
        max_s=sum(e.max_s for e in envs) + manifest.test.timeout_s + approvals * approval_timeout_s,
    )


def as_dict(plan: DeliveryPlan) -> dict[str, Any]:
    return plan.model_dump(mode="json")
