"""What is live for each service in each environment, read from the routers, the target and
the ledgers.

The answers of ``delivery status`` and the stop-everything of ``delivery down``. Both read the
environments from their local snapshots (blocks/environment.py ``remember``), so they answer
at once, without the Prefect API: what runs comes from each service's router and the target,
history (the database's revision) from its ledger. An environment with no snapshot yet (a
block made in the UI and never used) is read from the Prefect API instead. One entry per
(environment, service): every service is shown apart, or only those ``--service`` names.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect_delivery.blocks.environment_view import EnvironmentView
from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.tasks.runtime.direct_http import Answer, ask_all


def environment_names() -> list[str]:
    """Every Environment block on the Prefect API (slow path: starts or asks the API)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type("delivery-environment")
        except Exception:  # the block type is not registered yet: no environments
            return []
    return sorted(d.name for d in documents if d.name)


def environments(names: list[str] | None, state_dirs: list[str]) -> list[EnvironmentView]:
    """The environments to report on: from their snapshots, else from the Prefect API (which
    then leaves a snapshot for the next time)."""
    if not names:
        views = EnvironmentView.recall_all(state_dirs)
        if views:
            return views
        names = environment_names()
    found = []
    for name in names:
        view = EnvironmentView.recall(name, state_dirs)
        if view is None:
            view = _from_the_api(name, state_dirs)
        found.append(view)
    return found


def _from_the_api(name: str, state_dirs: list[str]) -> EnvironmentView:
    from prefect_delivery.blocks.environment import Environment

    try:
        env = Environment.load(name)
    except ValueError:
        raise ConfigError(
            f"environment {name!r}",
            "has no snapshot in the state folders "
            f"({', '.join(state_dirs) or 'none given'}) and no block on the Prefect API.",
            "pass --state-dir (or set DELIVERY_STATE_DIR) to the folder `delivery setup` used, "
            "or check the name with `delivery status`.",
        ) from None
    env.remember()
    view = EnvironmentView.recall(name, [env.state_dir])
    assert view is not None
    return view


def instance_report(live) -> list[dict[str, Any]]:
    """Every instance as the target and the router see it, with what it says it is (asked
    side by side, half a second at most, when its release names a ``version_path``)."""
    asked = [
        li for li in live.instances if li.instance.alive and li.instance.release.run.version_path
    ]
    answers = ask_all(
        [li.instance.url + li.instance.release.run.version_path for li in asked], timeout=0.5
    )
    said = {li.instance.id: _json(a) for li, a in zip(asked, answers, strict=True)}
    return [
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
            "answers": said.get(li.instance.id),
        }
        for li in live.instances
    ]


def _json(answer: Answer | None) -> Any:
    if answer is None or answer.status != 200:
        return None
    try:
        return json.loads(answer.body)
    except ValueError:
        return None


def scoped_views(
    names: list[str] | None, state_dirs: list[str], services: list[str] | None = None
) -> list[EnvironmentView]:
    """One view per (environment, service): every service of each environment, or those
    ``services`` names (one that no environment carries is bad input)."""
    views = environments(names, state_dirs)
    if services:
        known = {s for view in views for s in view.services()}
        for service in services:
            if service not in known:
                raise ConfigError(
                    f"--service {service}",
                    f"no environment carries it (services: {', '.join(sorted(known)) or 'none'}).",
                    "check the name (`delivery status` lists every service), or register it "
                    "with `delivery service add SERVICE_DIR`.",
                )
    return [scoped for view in views for scoped in view.scoped(services)]


def status_report(
    names: list[str] | None = None,
    state_dirs: list[str] | None = None,
    services: list[str] | None = None,
):
    """One entry per (environment, service), each read live; they are read side by side, so
    the answer takes as long as the slowest one, not their sum."""
    views = scoped_views(names, state_dirs or [], services)
    if len(views) <= 1:
        return [environment_report(env) for env in views]
    with ThreadPoolExecutor(max_workers=min(8, len(views))) as pool:
        return list(pool.map(environment_report, views))


def environment_report(env: EnvironmentView) -> dict[str, Any]:
    live = env.observe()
    shares = live.shares()
    serving = live.serving()
    return {
        "environment": env.name,
        "service": env.service,
        "url": env.url,
        "router_running": live.router_running,
        "strategy": env.strategy.get("kind"),
        "policy": {
            **env.promotion,
            "summary": describe_policy(env.promotion),
            "instances": env.strategy.get("instances"),
            "bake_s": env.block.get("bake_s"),
            "step_pause_s": env.strategy.get("step_pause_s"),
            "keep_previous_s": env.strategy.get("keep_previous_s"),
        },
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
        "instances": instance_report(live),
        "database": database_status(env),
    }


def describe_policy(promotion: dict) -> str:
    from prefect_delivery.blocks.settings import PromotionPolicy

    return PromotionPolicy.model_validate(promotion).describe()


def database_status(env: EnvironmentView) -> dict | None:
    """The environment's database: its masked URL, and the revision the ledger last saw it
    reach (the database itself is not asked: its URL is a secret kept in the block)."""
    from prefect_delivery.blocks.database.local import LocalCluster

    db = env.database
    if not db:
        return None
    status = {"url": db.get("masked_url"), "revision": None, "state": "up"}
    if db.get("local_cluster") and not LocalCluster(db["local_cluster"]).running:
        status["state"] = "stopped"
    entry = env.ledger().last("migrated")
    if entry is not None:
        status["revision"] = entry.details.get("to_revision")
    return status


def shut_down(
    names: list[str] | None = None,
    state_dirs: list[str] | None = None,
    services: list[str] | None = None,
) -> list[str]:
    """Stop the instances and routers of every service (or of those ``services`` names) in
    the environments; an environment's own PostgreSQL stops only with all of its services."""
    from prefect_delivery.blocks.database.local import LocalCluster

    stopped = []
    for env in scoped_views(names, state_dirs or [], services):
        for instance in env.instances():
            env.stop(instance)
            stopped.append(instance.id)
        env.stop_router()
        stopped.append(f"router:{env.scope}")
    if services:
        return stopped
    for env in environments(names, state_dirs or []):
        cluster = (env.database or {}).get("local_cluster")
        if cluster and LocalCluster(cluster).stop():
            stopped.append(f"postgres:{env.name}")
    return stopped
