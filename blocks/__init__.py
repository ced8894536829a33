"""Prefect Blocks of prefect-delivery: configuration, secrets and the adapters that use them.

Register them with ``prefect block register -m blocks``.
"""

from blocks.artifacts import ArtifactStore
from blocks.environment import Environment
from blocks.haproxy import HAProxyRouter
from blocks.process_target import ProcessTarget

__all__ = ["ArtifactStore", "Environment", "HAProxyRouter", "ProcessTarget"]
