"""Prefect Blocks of prefect-delivery: configuration, secrets and the adapters that use them.

Register them with ``prefect block register -m prefect_delivery.blocks``.
"""

from prefect_delivery.blocks.artifacts import ArtifactStore
from prefect_delivery.blocks.database import PostgresDatabase
from prefect_delivery.blocks.docker_target import DockerTarget
from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.haproxy import HAProxyRouter
from prefect_delivery.blocks.process_target import ProcessTarget
from prefect_delivery.blocks.registry import ImageRegistry

__all__ = [
    "ArtifactStore",
    "DockerTarget",
    "Environment",
    "HAProxyRouter",
    "ImageRegistry",
    "PostgresDatabase",
    "ProcessTarget",
]
