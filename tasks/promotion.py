"""Promotion policy: what a run may ask for, decided from the environments' own policy.

A run names what to deliver and where; the Environment blocks say what is allowed there. These
checks run before anything is built or changed (the delivery flow), and again where a release
actually enters an environment (the deploy flow, whoever calls it: a deployment, the CLI, the
Python API), reading the ledgers, never the run's parameters:

- ``upstream``: the upstream environment must have verified this digest (or, before the build,
  this commit). An upstream named later in the same run is refused (wrong order).
- ``requires_approval``: a recorded approval of this digest must stand; ``auto_approve`` only
  satisfies it where ``allow_auto_approval`` says so.
- ``approvers`` / ``allow_self_approval``: who may answer (checked where answers come in:
  tasks/approve.py, tasks/approval_answer.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from prefect_delivery.blocks.errors import ConfigError, GateFailed
from prefect_delivery.blocks.ledger import Ledger
from prefect_delivery.blocks.release import Release
from prefect_delivery.blocks.settings import PromotionPolicy


class PolicyRefused(ConfigError):
    """A run asked for something an environment's promotion policy does not allow."""


class HasPolicy(Protocol):
    name: str
    promotion: PromotionPolicy


def check_request(
    envs: Sequence[HasPolicy],
    commit: str,
    auto_approve: bool,
    verified_commits: Callable[[str], set[str]],
) -> None:
    """Refuse, before anything runs, a run the environments' policies do not allow (pure but
    for ``verified_commits``: environment name -> commits its ledger records as verified)."""
    names = [env.name for env in envs]
    for index, env in enumerate(envs):
        policy = env.promotion
        where = f"environment {env.name!r} promotion policy"
        upstream = policy.upstream
        if upstream and upstream in names[index + 1 :]:
            raise PolicyRefused(
                f"{where} (upstream: {upstream})",
                f"the run delivers to {env.name} before {upstream}, which must verify each "
                "release first.",
                f"name the environments in promotion order: {upstream} before {env.name}.",
            )
        if upstream and upstream not in names[:index]:
            if commit not in verified_commits(upstream):
                raise PolicyRefused(
                    f"{where} (upstream: {upstream})",
                    f"commit {commit[:12]} was never verified in {upstream}, and this run does "
                    f"not deliver it there first; {env.name} only takes releases {upstream} "
                    "verified.",
                    f"deliver it through {upstream} first: include {upstream} in the run "
                    f"(--env {upstream} --env {env.name}).",
                )
        if policy.requires_approval and auto_approve and not policy.allow_auto_approval:
            raise PolicyRefused(
                f"{where} (allow_auto_approval: false)",
                f"the run asks to approve {env.name} automatically, which its policy forbids: "
                "a person approves every release there.",
                f"run without auto-approval and approve it in the Prefect UI or with "
                f"`delivery approve RUN_ID`; only the {env.name} Environment block (Prefect "
                "UI, Blocks) can allow auto-approval.",
            )


def require_verified_upstream(
    env_name: str, policy: PromotionPolicy, upstream: Ledger | None, release: Release
) -> None:
    """The digest itself must be verified upstream (the build may have made a new one)."""
    if not policy.upstream:
        return
    verified = {r.digest for r in upstream.verified_releases()} if upstream else set()
    if release.digest not in verified:
        raise GateFailed(
            "promotion",
            f"{release.label} was not verified in {policy.upstream} (the upstream of "
            f"{env_name}); refusing to promote it. Deliver it through {policy.upstream} first.",
        )


def approval_stands(ledger: Ledger, release: Release) -> bool:
    """True when the newest decision about this digest here is an approval that no finished
    rollout has used up yet (an approval lets one release in once)."""
    for entry in reversed(ledger.entries()):
        if entry.release.digest != release.digest:
            continue
        if entry.event in ("verified", "failed", "rolled-back", "rejected"):
            return False
        if entry.event == "approved":
            return True
    return False


def require_approval(env_name: str, policy: PromotionPolicy, ledger: Ledger, release: Release):
    if policy.requires_approval and not approval_stands(ledger, release):
        raise GateFailed(
            "approval",
            f"{env_name} requires an approval of {release.label} (digest {release.digest}) "
            "and none stands in its ledger; nothing was changed there. Deliver it with the "
            "delivery flow, which asks for the approval.",
        )


def is_author(approver: str, author: str | None) -> bool:
    """Does ``approver`` (a name, handle or e-mail) name the commit's author
    (``Name <email>``)? Compared without case, on the name, the e-mail and its local part."""
    if not author:
        return False
    who = approver.strip().lower()
    name, _, email = author.partition("<")
    email = email.rstrip(">").strip().lower()
    candidates = {name.strip().lower(), email, email.split("@", 1)[0]}
    return who in {c for c in candidates if c}


def answer_refusal(policy: PromotionPolicy, env_name: str, approver: str, release: Release):
    """Why this approver may not approve this release here (None: they may)."""
    if not policy.may_approve(approver):
        return (
            f"{approver!r} may not approve releases for {env_name}: its approvers are "
            f"{', '.join(policy.approvers)}. Ask one of them."
        )
    if not policy.allow_self_approval and is_author(approver, release.author):
        return (
            f"{approver!r} wrote commit {release.commit[:12]} ({release.author}) and may not "
            f"approve their own release for {env_name}. Ask another approver."
        )
    return None


def promotion_gate(env, release: Release) -> None:
    """The environment's own policy where a release enters it (the deploy and migration
    flows, whoever calls them): the digest verified upstream (in the same service's history
    there) and, where approval is required, an approval of this digest standing in the
    service's ledger here."""
    from prefect_delivery.blocks.environment import Environment

    upstream = None
    if env.promotion.upstream:
        try:
            upstream = Environment.load(env.promotion.upstream).history(release.service)
        except (ValueError, RuntimeError):
            upstream = None
    require_verified_upstream(env.name, env.promotion, upstream, release)
    require_approval(env.name, env.promotion, env.ledger(), release)
