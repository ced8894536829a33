"""What is live in each environment, read from the router, the target and the ledger.

The answers of ``delivery status`` and the stop-everything of ``delivery down``. Both read the
environments from their local snapshots (blocks/environment.py ``remember``), so they answer
at once, without the Prefect API: what runs comes from the router and the target, history
(the database's revision) from the ledger. An environment with no snapshot yet (a block made
in the UI and never used) is read from the Prefect API instead.
"""

from __future__ import annotations

from typing import Any

from prefect_delivery.blocks.environment_view import EnvironmentView
from prefect_delivery.blocks.errors import ConfigError


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
    import httpx

    instances = []
    for li in live.instances:
        answered = None
        if li.instance.alive and li.instance.release.run.version_path:
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
    return instances


def status_report(names: list[str] | None = None, state_dirs: list[str] | None = None):
    report = []
    for env in environments(names, state_dirs or []):
        live = env.observe()
        shares = live.shares()
        serving = live.serving()
        report.append(
            {
                "environment": env.name,
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
        )
    return report


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


def shut_down(names: list[str] | None = None, state_dirs: list[str] | None = None) -> list[str]:
    from prefect_delivery.blocks.database.local import LocalCluster

    stopped = []
    for env in environments(names, state_dirs or []):
        for instance in env.instances():
            env.stop(instance)
            stopped.append(instance.id)
        env.stop_router()
        stopped.append(f"router:{env.name}")
        cluster = (env.database or {}).get("local_cluster")
        if cluster and LocalCluster(cluster).stop():
            stopped.append(f"postgres:{env.name}")
    return stopped
