"""Prefect Blocks of prefect-delivery: configuration, secrets and the adapters that use them.

One sub-package per seam (routing/, targets/, metrics/, database/), the domain models flat
beside them. Importing this package registers every block type with Prefect; Prefect imports it
through the ``prefect.collections`` entry point (server, workers, ``prefect block register``),
or register them by hand with ``prefect block register -m prefect_delivery.blocks``.
"""

from prefect_delivery.blocks.artifacts import ArtifactStore
from prefect_delivery.blocks.database import PostgresDatabase
from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.metrics.probe import ProbeSource
from prefect_delivery.blocks.metrics.prometheus import PrometheusSource
from prefect_delivery.blocks.metrics.router_stats import RouterStatsSource
from prefect_delivery.blocks.registry import ImageRegistry
from prefect_delivery.blocks.routing.haproxy import HAProxyRouter
from prefect_delivery.blocks.targets.docker import DockerTarget
from prefect_delivery.blocks.targets.process import ProcessTarget

__all__ = [
    "ArtifactStore",
    "DockerTarget",
    "Environment",
    "HAProxyRouter",
    "ImageRegistry",
    "PostgresDatabase",
    "ProbeSource",
    "PrometheusSource",
    "ProcessTarget",
    "RouterStatsSource",
]
