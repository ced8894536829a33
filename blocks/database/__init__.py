"""The database seam: an environment's PostgreSQL (a Block with its secret URL and migration
limits) and the local clusters `delivery setup`/`demo` run for it (``local``, no Prefect)."""

from __future__ import annotations


def __getattr__(name: str) -> object:
    if name == "PostgresDatabase":  # imported on first use: the Block needs Prefect
        from prefect_delivery.blocks.database.postgres import PostgresDatabase

        return PostgresDatabase
    raise AttributeError(name)


__all__ = ["PostgresDatabase"]
