"""The database seam: an environment's PostgreSQL (a Block with its secret URL and migration
limits) and the local clusters `delivery setup`/`demo` run for it."""

from prefect_delivery.blocks.database.postgres import PostgresDatabase

__all__ = ["PostgresDatabase"]
