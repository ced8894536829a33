"""Deploy stage tasks: reconcile, launch, move traffic, roll back, retire.

Each task reads the environment's live state itself and does one thing. The deploy flow
(flows/deploy.py) strings them together following a strategy's plan. Traffic only ever moves by
router weights; a new release starts beside the live one, never in its place.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
from prefect import task
from pydantic import BaseModel

from prefect_delivery.blocks import httpclient
from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.errors import ConfigError, GateFailed, InfrastructureError, quoted
from prefect_delivery.blocks.metrics.probe import smoke
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks.reconcile import decide_reconcile
from prefect_delivery.tasks.runtime.lock import traffic_change
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.retry import INFRA_RETRIES
from prefect_delivery.tasks.strategies import validate_split, weights_for_share


# ---------------------------------------------------------------------------- reconcile
class Reconciled(BaseModel):
    stable: Release | None
    stable_instances: list[Instance]
    already_live: bool
    notes: list[str]


def _retire(env: Environment, instances: list[Instance]) -> None:
    """Drain, detach and stop instances (already out of traffic or about to be)."""
    for instance in instances:
        if instance.alive:
            try:
                env.router.drain(instance.address, timeout_s=5)
            except InfrastructureError:
                pass  # not attached
        env.router.detach(instance.address)
        env.target.stop(instance)


@task(name="reconcile", **INFRA_RETRIES)
def reconcile(env: Environment, new: Release, keep_warm: bool = False) -> Reconciled:
    """Read what is live; put traffic back on the stable release; retire leftovers."""
    logger = run_logger()
    env.router.ensure_started()
    live = env.observe()
    verified = [r.digest for r in env.ledger().verified_releases()]
    decision = decide_reconcile(live, new.digest, verified, keep_warm=keep_warm)
    for note in decision.notes:
        logger.info("Reconcile %s: %s", env.name, note)
    if decision.weights:
        env.router.set_weights(decision.weights)
    by_id = {li.instance.id: li.instance for li in live.instances}
    _retire(env, [by_id[i] for i in decision.stop if i in by_id])
    for server in live.unknown_servers:
        logger.warning(
            "Reconcile %s: router slot %s belongs to no known instance", env.name, server
        )
    stable_instances = [
        li.instance
        for li in live.instances
        if li.instance.alive and li.instance.release.digest == decision.stable_digest
    ]
    stable = stable_instances[0].release if stable_instances else None
    return Reconciled(
        stable=stable,
        stable_instances=stable_instances,
        already_live=decision.already_live,
        notes=decision.notes,
    )


# ---------------------------------------------------------------------------- launch
def wait_healthy(env: Environment, instance: Instance, release: Release) -> None:
    """Poll the instance's health path until 200; a crash or timeout is the release's fault.
    (Whose answer it was is confirmed after: ``Target.confirm``.)"""
    deadline = time.monotonic() + release.run.startup_timeout_s
    last = "no answer"
    url = instance.url + release.run.health_path
    with httpclient.client(timeout=2) as client:
        while time.monotonic() < deadline:
            if not env.running([instance]):
                log = env.target.logs(instance)
                if "address already in use" in log.lower():
                    raise InfrastructureError(f"port {instance.port} was taken: {quoted(log, 300)}")
                raise GateFailed(
                    "health",
                    f"instance {instance.id} of {release.label} exited during start-up. "
                    f"Last output:\n{quoted(log)}",
                )
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                if response.status_code in (404, 405):
                    raise GateFailed(
                        "health",
                        f"health path {release.run.health_path} answered {response.status_code} on "
                        f"{release.label}: the service has no such endpoint. Fix "
                        "[run].health_path in delivery.toml (e.g. '/healthz').",
                    )
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.05)
    raise GateFailed(
        "health",
        f"instance {instance.id} of {release.label} was not healthy on "
        f"{release.run.health_path} after {release.run.startup_timeout_s:.0f}s (last: {last}). "
        f"Last output:\n{quoted(env.target.logs(instance))}",
    )


@task(name="launch", task_run_name="launch {slot} x{count}", **INFRA_RETRIES)
def launch(env: Environment, release: Release, slot: str, count: int) -> list[Instance]:
    """Start ``count`` instances beside the live ones, health-check and smoke-test each on its
    own address (the preview), then attach them to the router with weight 0."""
    logger = run_logger()
    started: list[Instance] = []
    try:
        env.target.prepare(release)
        if env.database is not None:
            env.database.ensure_started()  # a local cluster `delivery down` stopped
        extra = env.instance_env()
        for n in range(count):
            name = slot if count == 1 else f"{slot}{n}"
            started.append(env.target.start(release, env.name, name, env=extra))
        for instance in started:
            wait_healthy(env, instance, release)
            env.target.confirm(instance)  # its port answers from it, not from another program
            problems = smoke(instance.url, release.run.smoke)
            if problems:
                raise GateFailed(
                    "smoke", f"preview {instance.url} of {release.label}: " + "; ".join(problems)
                )
            logger.info("Instance %s healthy at %s (preview passed)", instance.id, instance.url)
        with traffic_change(env.key, env.state_dir):
            for instance in started:
                env.router.attach(instance.address)
        for instance in started:
            env.router.wait_until_up(instance.address, timeout_s=release.run.startup_timeout_s)
    except BaseException:
        _retire(env, started)
        raise
    return started


# ---------------------------------------------------------------------------- traffic
class TrafficChange(BaseModel):
    percent_new: float
    weights: dict[str, int]
    took_ms: float


def share_weights(
    new_instances: list[Instance], stable_instances: list[Instance], percent: int
) -> dict[str, int]:
    validate_split({"new": percent, "stable": 100 - percent})
    weights = dict(
        zip(
            [i.address for i in new_instances],
            weights_for_share(percent, len(new_instances)),
            strict=True,
        )
    )
    weights.update(
        zip(
            [i.address for i in stable_instances],
            weights_for_share(100 - percent, len(stable_instances)),
            strict=True,
        )
    )
    return weights


@task(name="shift", task_run_name="shift {percent}%", **INFRA_RETRIES)
def shift(
    env: Environment, new_instances: list[Instance], stable_instances: list[Instance], percent: int
) -> TrafficChange:
    """Give the new release ``percent`` of the traffic; the rest stays on the stable release."""
    weights = share_weights(new_instances, stable_instances, percent)
    with traffic_change(env.key, env.state_dir):
        took = env.router.set_weights(weights)
    run_logger().info("%s: %d%% to the new release in %.1fms", env.name, percent, took)
    return TrafficChange(percent_new=percent, weights=weights, took_ms=took)


@task(name="replace", task_run_name="replace {index}", **INFRA_RETRIES)
def replace(
    env: Environment,
    new_instances: list[Instance],
    stable_instances: list[Instance],
    index: int,
) -> TrafficChange:
    """Rolling: the first index+1 stable instances hand their traffic to the new ones."""
    each = 200 // max(1, len(stable_instances))
    weights = {i.address: each for i in new_instances[: index + 1]}
    for n, instance in enumerate(stable_instances):
        weights[instance.address] = 0 if n <= index else each
    with traffic_change(env.key, env.state_dir):
        took = env.router.set_weights(weights)
    total = len(stable_instances)
    percent = 100.0 * min(index + 1, total) / max(1, total)
    run_logger().info(
        "%s: instance %d/%d replaced (%.0f%% new) in %.1fms",
        env.name,
        index + 1,
        total,
        percent,
        took,
    )
    return TrafficChange(percent_new=percent, weights=weights, took_ms=took)


@task(name="rollback-traffic", **INFRA_RETRIES)
def restore(
    env: Environment, stable_instances: list[Instance], new_instances: list[Instance]
) -> TrafficChange:
    """Roll back: all traffic to the stable release's instances in one weight change."""
    stable = env.running(stable_instances)
    if stable_instances and not stable:
        raise InfrastructureError(
            f"no instance of the stable release is alive in {env.name}; cannot roll back by "
            "traffic (run the rollback flow, which restarts it from its artifact)"
        )
    attached = set(env.router.weights())
    weights = {a: w for a, w in share_weights([], stable, 0).items() if a in attached}
    weights.update({i.address: 0 for i in new_instances if i.address in attached})
    with traffic_change(env.key, env.state_dir):
        took = env.router.set_weights(weights) if weights else 0.0
    run_logger().warning(
        "%s: rolled back to the stable release (%d instance(s)) in %.1fms",
        env.name,
        len(stable),
        took,
    )
    return TrafficChange(percent_new=0, weights=weights, took_ms=took)


@task(name="retire", **INFRA_RETRIES)
def retire(env: Environment, instances: list[Instance]) -> int:
    """Drain, detach and stop instances that no longer take traffic."""
    known = {i.id: i for i in env.instances()}
    current = [known[i.id] for i in instances if i.id in known]
    _retire(env, current)
    if current:
        run_logger().info("%s: retired %d instance(s)", env.name, len(current))
    return len(current)


@task(name="retire-previous", **INFRA_RETRIES)
def retire_previous(env: Environment, previous: list[Instance], cutover_at: datetime | None) -> int:
    """Retire the previous release once its keep window since the cutover has passed.

    Inside the window it stays warm (weight 0), so a rollback is a weight change; the next
    deploy of this environment retires it in any case.
    """
    if not previous:
        return 0
    keep = env.strategy.keep_previous_s
    elapsed = (datetime.now(UTC) - cutover_at).total_seconds() if cutover_at else keep
    if elapsed < keep:
        run_logger().info(
            "%s: previous release kept warm for %.0fs more (keep_previous_s=%.0f)",
            env.name,
            keep - elapsed,
            keep,
        )
        return 0
    return retire.fn(env, previous)


def retire_release(env: Environment, ref: str, reason: str) -> tuple[Release, int]:
    """Stop every instance of the release ``ref`` (a commit, a prefix of one, or a digest)
    that runs in ``env`` without taking traffic (kept warm for a rollback); returns it and
    how many instances stopped. A release that takes traffic is refused: use a rollback."""
    live = env.observe()
    chosen = [
        li
        for li in live.instances
        if li.instance.release.commit.startswith(ref)
        or li.instance.release.digest in (ref, f"sha256:{ref}")
    ]
    if not chosen:
        raise ConfigError(
            f"retire {env.scope} {ref}",
            "no instance of such a release runs there.",
            "pick a commit or digest from `delivery status`.",
        )
    serving = [li.instance.id for li in chosen if li.weight > 0]
    if serving:
        raise ConfigError(
            f"retire {env.scope} {ref}",
            f"{', '.join(serving)} take(s) traffic; only a release kept warm can be retired.",
            f"deliver another release or `delivery rollback {env.name} --service "
            f"{env.service}` first.",
        )
    release = chosen[0].instance.release
    count = retire.fn(env, [li.instance for li in chosen])
    env.ledger().append("retired", release, None, reason=reason)
    return release, count
