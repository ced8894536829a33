"""PostgresDatabase: an environment's database, its secret URL and the limits migrations run with.

The URL is a ``SecretStr``: it is shown masked (``postgresql+psycopg://app:***@host/db``) in
every message, never logged, never put in an exception, on a command line or in a flow
parameter. The code that needs the clear value calls :meth:`PostgresDatabase.secret_url` or
:meth:`instance_env`, which go through ``blocks.secrets.reveal`` (the value is then masked in
every log record of the process). Instances of a release get it only through their environment
(``DATABASE_URL``), the way processes and containers are given configuration.

``local_cluster`` names a PostgreSQL cluster the pipeline runs itself (``delivery setup`` /
``delivery demo``, one per environment under the state folder): started before it is used,
stopped by ``delivery down``. Leave it empty for a database someone else runs.
"""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from prefect_delivery.blocks.errors import ConfigError, DeliveryError, InfrastructureError
from prefect_delivery.blocks.schema_cache import SchemaOnce
from prefect_delivery.blocks.secrets import reveal


class PostgresDatabase(SchemaOnce, Block):
    """A PostgreSQL database an environment's releases use and its migrations are applied to."""

    _block_type_name = "Postgres Database"
    _block_type_slug = "delivery-postgres-database"
    _description = (
        "The PostgreSQL database of an environment: its URL (secret), and the lock_timeout, "
        "statement_timeout and retries its migrations are applied with."
    )

    url: SecretStr = Field(
        description="postgresql+psycopg://USER:PASSWORD@HOST:PORT/DBNAME (kept secret; "
        "instances get it as DATABASE_URL)."
    )
    lock_timeout_ms: int = Field(
        default=2000, ge=1, description="lock_timeout of migration statements (ms)."
    )
    statement_timeout_ms: int = Field(
        default=60000, ge=1, description="statement_timeout of migration statements (ms)."
    )
    connect_timeout_s: int = Field(default=10, ge=1, le=300)
    lock_retries: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Attempts of a revision that hits lock_timeout (exponential backoff).",
    )
    rehearsal_provider: Literal["local", "docker"] = Field(
        default="local",
        description="Where migrations are rehearsed before they touch this database: an "
        "ephemeral PostgreSQL from local binaries, or in a container.",
    )
    local_cluster: str | None = Field(
        default=None,
        description="Folder of a local PostgreSQL cluster the pipeline manages (delivery "
        "setup/demo): started before use, stopped by `delivery down`. Empty for a database "
        "run elsewhere.",
    )

    # ----------------------------------------------------------------- the URL
    @property
    def masked_url(self) -> str:
        from prefect_delivery.migrations_lab.urls import mask

        return mask(self.url)

    def secret_url(self) -> SecretStr:
        """The URL for a connection, checked; its value is now masked in every log record."""
        from prefect_delivery.migrations_lab.errors import LabConfigError
        from prefect_delivery.migrations_lab.urls import reveal as parse

        reveal(self.url)
        try:
            password = parse(self.url).password
        except LabConfigError as exc:
            raise ConfigError(
                "PostgresDatabase url", exc.problem, exc.fix or "fix the block's url"
            ) from None
        if password:
            reveal(str(password))  # also masked on its own (e.g. in a driver's message)
        return self.url

    def instance_env(self) -> dict[str, str]:
        """What an instance of a release gets in its environment to reach the database."""
        return {"DATABASE_URL": reveal(self.secret_url())}

    # ----------------------------------------------------------------- migration settings
    def timeouts(self):  # -> migrations_lab.TimeoutSettings
        from prefect_delivery.migrations_lab import TimeoutSettings

        return TimeoutSettings(
            lock_timeout_ms=self.lock_timeout_ms,
            statement_timeout_ms=self.statement_timeout_ms,
            connect_timeout_s=self.connect_timeout_s,
        )

    def retry_policy(self):  # -> migrations_lab.RetryPolicy
        from prefect_delivery.migrations_lab import RetryPolicy

        return RetryPolicy(attempts=self.lock_retries)

    # ----------------------------------------------------------------- the server
    def cluster(self):  # -> blocks.postgres_local.LocalCluster | None
        if not self.local_cluster:
            return None
        from prefect_delivery.blocks.database.local import LocalCluster

        return LocalCluster(self.local_cluster)

    def ensure_started(self) -> None:
        """Start the local cluster this pipeline manages, if any (idempotent)."""
        cluster = self.cluster()
        if cluster is not None:
            cluster.start()

    def stop(self) -> bool:
        cluster = self.cluster()
        return cluster.stop() if cluster is not None else False

    def current_revision(self, environment: str = "", version_table: str = "alembic_version"):
        """The Alembic revision the database is at (None: no version table)."""
        from prefect_delivery.migrations_lab import current_revision
        from prefect_delivery.migrations_lab.errors import LabError

        self.ensure_started()
        try:
            return current_revision(
                self.secret_url(), version_table=version_table, timeouts=self.timeouts()
            )
        except LabError as exc:
            raise self.error(exc, environment) from None

    def error(self, exc: Exception, environment: str = "") -> DeliveryError:
        """A lab error about this database as the pipeline's kind: a wrong password or a
        missing database is bad input (ConfigError); a server that does not answer is an
        infrastructure fault (retried)."""
        from prefect_delivery.migrations_lab.errors import (
            DatabaseUnavailable,
            LabConfigError,
            LabError,
        )

        where = f"database of {environment or 'the environment'} ({self.masked_url})"
        if isinstance(exc, DatabaseUnavailable):
            problem = exc.problem
            if "password" in problem or "does not exist" in problem:
                return ConfigError(
                    where,
                    problem,
                    "check the url (user, password, database name) of the environment's "
                    "PostgresDatabase block",
                )
            return InfrastructureError(f"{where}: {problem} Fix: {exc.fix}")
        if isinstance(exc, LabConfigError):
            return ConfigError(exc.where, exc.problem, exc.fix)
        if isinstance(exc, LabError):
            return InfrastructureError(str(exc))
        return InfrastructureError(f"{where}: {type(exc).__name__}")
