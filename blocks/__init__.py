"""Prefect Blocks of prefect-delivery: configuration, secrets and the adapters that use them.

Register them with ``prefect block register -m blocks``.
"""

from blocks.artifacts import ArtifactStore
from blocks.database import PostgresDatabase
from blocks.docker_target import DockerTarget
from blocks.environment import Environment
from blocks.haproxy import HAProxyRouter
from blocks.process_target import ProcessTarget
from blocks.registry import ImageRegistry

__all__ = [
    "ArtifactStore",
    "DockerTarget",
    "Environment",
    "HAProxyRouter",
    "ImageRegistry",
    "PostgresDatabase",
    "ProcessTarget",
]
