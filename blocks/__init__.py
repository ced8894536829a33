"""Prefect Blocks of prefect-delivery: configuration, secrets and the adapters that use them.

One sub-package per seam (routing/, targets/, metrics/, database/), the domain models flat
beside them. The Block classes are imported on first use (``prefect_delivery.blocks.Environment``
or ``prefect block register -m prefect_delivery.blocks``, which lists them), so that the pure
modules (release, ledger, the router's runtime client) load without Prefect: the commands that
must answer at once depend on that. Prefect imports ``prefect_delivery.blocks.catalog`` (every
block) through the ``prefect.collections`` entry point: server, workers, the UI's block list.
"""

from __future__ import annotations

import importlib

#: Block class -> the module that defines it.
BLOCKS = {
    "ArtifactStore": "prefect_delivery.blocks.artifacts",
    "DockerTarget": "prefect_delivery.blocks.targets.docker",
    "Environment": "prefect_delivery.blocks.environment",
    "HAProxyRouter": "prefect_delivery.blocks.routing.haproxy",
    "ImageRegistry": "prefect_delivery.blocks.registry",
    "PostgresDatabase": "prefect_delivery.blocks.database.postgres",
    "ProbeSource": "prefect_delivery.blocks.metrics.probe",
    "PrometheusSource": "prefect_delivery.blocks.metrics.prometheus",
    "ProcessTarget": "prefect_delivery.blocks.targets.process",
    "RouterStatsSource": "prefect_delivery.blocks.metrics.router_stats",
}

__all__ = sorted(BLOCKS)


def __getattr__(name: str) -> object:
    if name in BLOCKS:
        return getattr(importlib.import_module(BLOCKS[name]), name)
    raise AttributeError(name)


def __dir__() -> list[str]:
    return [*globals(), *__all__]
