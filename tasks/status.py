"""What is live in each environment, read from the router, the target and the ledger.

Read-only: the answers of ``delivery status`` and the stop-everything of ``delivery down``.
"""

from __future__ import annotations


def environment_names() -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type("delivery-environment")
        except Exception:  # the block type is not registered yet: no environments
            return []
    return sorted(d.name for d in documents if d.name)


def status_report(names: list[str] | None = None) -> list[dict]:
    import httpx

    from prefect_delivery.blocks.environment import Environment

    report = []
    for name in names or environment_names():
        env = Environment.load(name)
        live = env.observe()
        shares = live.shares()
        serving = live.serving()
        instances = []
        for li in live.instances:
            answered = None
            if li.instance.alive:
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
        report.append(
            {
                "environment": env.name,
                "url": env.url,
                "router_running": live.router_running,
                "strategy": env.strategy.kind,
                "policy": {
                    **env.promotion.model_dump(),
                    "summary": env.promotion.describe(),
                    "instances": env.strategy.instances,
                    "bake_s": env.bake_s,
                    "step_pause_s": env.strategy.step_pause_s,
                    "keep_previous_s": env.strategy.keep_previous_s,
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
                "instances": instances,
                "database": database_status(env),
            }
        )
    return report


def database_status(env) -> dict | None:
    """The environment's database: masked URL and revision (a stopped local one: not asked)."""
    from prefect_delivery.blocks.errors import DeliveryError

    if env.database is None:
        return None
    status = {"url": env.database.masked_url, "revision": None, "state": "up"}
    cluster = env.database.cluster()
    if cluster is not None and not cluster.running:
        status["state"] = "stopped"
        return status
    try:
        status["revision"] = env.database.current_revision(env.name)
    except DeliveryError as exc:
        status["state"] = str(exc).splitlines()[0][:200]
    return status


def shut_down(names: list[str] | None = None) -> list[str]:
    from prefect_delivery.blocks.environment import Environment

    stopped = []
    for name in names or environment_names():
        env = Environment.load(name)
        for instance in env.target.list(env.name):
            env.target.stop(instance, timeout_s=5)
            stopped.append(instance.id)
        env.router.stop()
        stopped.append(f"router:{env.name}")
        if env.database is not None and env.database.stop():
            stopped.append(f"postgres:{env.name}")
    return stopped
