"""Break glass: a rollback that moves traffic first, in milliseconds, and is recorded after.

What a person (``delivery rollback ENV``) or a monitor (``delivery monitor-listen``) gets: the
environment is read from its snapshot (blocks/environment_view.py: no Prefect import, no
Prefect API), the target is decided from the ledger and the router, and traffic moves in one
weight change, under the environment's traffic lock, after the preemption marker that stops a
delivery in progress at its next safe point (tasks/runtime/traffic.py). Then the rollback flow
(``record_rollback``) verifies the target through the frontend, retires what traffic left and
writes the report, while the person already has their environment back.

It switches only what is safe to switch at once; anything else is said at once and left to
the rollback flow (which can start instances, ramp up and run the full schema gate):

- ``not-warm``: the target's instances are gone (retired): they must be started and verified;
- ``needs-flow``: the warm release has fewer healthy instances than serve now (it must ramp
  up first: argo-rollouts#3941 switched to a release without capacity and caused an
  incident), or a contract was applied since the target was verified (the full schema gate
  decides whether the target still works with the database).

Pure code except for the router's admin socket, the target's instance list and an HTTP health
check per warm instance.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from prefect_delivery.blocks.environment_view import EnvironmentView
from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.ledger import Ledger
from prefect_delivery.blocks.live import LiveState
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks.runtime.direct_http import ask_all
from prefect_delivery.tasks.runtime.traffic import preempt, traffic_lock
from prefect_delivery.tasks.strategies import weights_for_share

Status = Literal["switched", "not-serving", "already-there", "not-warm", "needs-flow"]


def names(expected: str, digest: str) -> bool:
    """Does ``expected`` (a digest, with or without ``sha256:``, or a prefix) name ``digest``?"""
    expected = expected.strip().split(":", 1)[-1]
    return bool(expected) and digest.split(":", 1)[-1].startswith(expected)


def rollback_plan(
    live: LiveState, verified: list[Release], to: str | None, environment: str
) -> tuple[Release, list[Release]]:
    """(the release to return to, the releases traffic leaves), decided from the router's
    live state and the ledger's verified releases, newest first (pure).

    A release that holds traffic without being verified here is in flight (a rollout in
    progress, or one a crash interrupted): the rollback returns to the newest verified release
    that still runs (the stable one). Otherwise it returns to the newest verified release
    before the one serving. ``to`` names one verified release explicitly."""
    shares = live.shares()
    releases = live.releases()
    with_traffic = [releases[d] for d in shares]
    verified_digests = [r.digest for r in verified]
    running = {li.instance.release.digest for li in live.instances if li.instance.alive}
    if to:
        target = next(
            (r for r in verified if names(to, r.digest) or r.commit.startswith(to.strip())), None
        )
        if target is None:
            raise ConfigError(
                f"rollback {environment} --to",
                f"{to!r} is not a release verified in {environment}.",
                "pick a digest or commit from `delivery status` or the environment's history.",
            )
    elif any(r.digest not in verified_digests for r in with_traffic):
        target = next((r for r in verified if r.digest in running), None)
        if target is None:
            raise ConfigError(
                f"rollback {environment}",
                "traffic is on a release that was never verified here, and no verified "
                "release runs to return to.",
                f"use `delivery rollback {environment} --to <commit>` to start a verified one "
                "again.",
            )
    else:
        current = live.serving()
        target = next((r for r in verified if current is None or r.digest != current.digest), None)
        if target is None:
            raise ConfigError(
                f"rollback {environment}",
                "there is no previous verified release to return to.",
                "deliver a release first; a rollback needs one verified before the current one.",
            )
    return target, [r for r in with_traffic if r.digest != target.digest]


def contract_since(ledger: Ledger, target: Release) -> str | None:
    """The contract applied here after ``target`` was last verified (None: none was)."""
    verified = ledger.last("verified", target.digest)
    for entry in ledger.entries():
        if entry.event != "migrated" or entry.details.get("status") != "applied":
            continue
        if verified is not None and entry.at < verified.at:
            continue
        phase = str(entry.details.get("phase") or "")
        if "contract" in phase:
            return phase
    return None


class Switch(BaseModel):
    environment: str
    service: str = ""
    status: Status
    message: str
    target: Release | None = None
    left: list[Release] = Field(default_factory=list)
    serving: Release | None = None  # what served before
    to_instances: list[Instance] = Field(default_factory=list)
    from_instances: list[Instance] = Field(default_factory=list)
    switch_ms: float = 0.0
    at: float = 0.0  # wall clock of the switch


def healthy(instances: list[Instance], path: str) -> list[Instance]:
    """The instances that answer ``path`` with 200 within a second (asked side by side)."""
    answers = ask_all([i.url + path for i in instances], timeout=1.0)
    return [i for i, a in zip(instances, answers, strict=True) if a is not None and a.status == 200]


def break_glass(
    view: EnvironmentView,
    reason: str,
    by: str,
    expect_digest: str | None = None,
    to: str | None = None,
) -> Switch:
    """Move all of one service's traffic (``view``: scoped to it) to the release to return
    to, at once, when that is safe (see the module docstring); says what it did, or why the
    rollback flow must do it. Nothing of another service moves."""
    live = view.observe()
    serving = live.serving()
    base = {"environment": view.name, "service": view.service, "serving": serving}
    if expect_digest and (serving is None or not names(expect_digest, serving.digest)):
        return Switch(
            **base,
            status="not-serving",
            message=f"the alert is about {expect_digest[:19]}, which does not serve "
            f"{view.scope} now ({serving.label if serving else 'nothing'} does); nothing to do",
        )
    ledger = view.ledger()
    target, left = rollback_plan(live, ledger.verified_releases(), to, view.cli)
    base.update(target=target, left=left)
    if not left:
        return Switch(**base, status="already-there", message=f"{view.scope} serves {target.label}")
    if view.database and (phase := contract_since(ledger, target)):
        return Switch(
            **base,
            status="needs-flow",
            message=f"a contract ({phase}) was applied since {target.label} was verified here; "
            "the rollback flow's schema gate decides whether it still works with the database",
        )
    attached = [
        li.instance
        for li in live.of_release(target.digest)
        if li.instance.alive and li.slot is not None
    ]
    warm = healthy(attached, target.run.health_path)
    serving_now = [li.instance for li in live.instances if li.instance.alive and li.weight > 0]
    base.update(to_instances=warm)
    if not warm:
        return Switch(
            **base,
            status="not-warm",
            message=f"{target.label} is not warm in {view.scope} (retired): it must be started "
            "again and verified before it takes traffic",
        )
    leaving = [li.instance for li in live.instances if li.instance.release.digest != target.digest]
    if len(warm) < len([i for i in serving_now if i.release.digest != target.digest]):
        return Switch(
            **base,
            status="needs-flow",
            message=f"{target.label} has {len(warm)} healthy warm instance(s) and "
            f"{len(serving_now)} serve now: it must ramp up before it takes all the traffic",
        )
    weights = dict(zip([i.address for i in warm], weights_for_share(100, len(warm)), strict=True))
    live_weights = {li.instance.address: li.weight for li in live.attached()}
    weights.update({i.address: 0 for i in leaving if live_weights.get(i.address)})
    router = view.router()
    with traffic_lock(view.state_dir, view.key):
        preempt(view.state_dir, view.key, by, target.digest, reason)
        started = time.perf_counter()
        router.set_weights(weights)
        took = (time.perf_counter() - started) * 1000
        at = time.time()
    for release in left:
        ledger.append(
            "rolled-back",
            release,
            None,
            reason=reason[:500],
            to=target.digest,
            by=by,
            switched="break-glass",
        )
    return Switch(
        **base,
        status="switched",
        message=f"{view.scope}: all traffic on {target.label} in {took:.1f} ms "
        f"(was {serving.label if serving else 'nothing'})",
        from_instances=leaving,
        switch_ms=took,
        at=at,
    )
