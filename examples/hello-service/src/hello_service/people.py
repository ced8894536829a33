"""The people directory: one table, read through SQLAlchemy Core.

The schema change this service carries (revisions in ``migrations/``) splits ``people.name``
into ``first_name`` / ``last_name`` over three releases (expand, migrate, contract). Which
columns this release's code reads is ``people_schema`` in ``settings.toml``:

- ``name``: the code reads ``name`` and splits it itself (releases 1 and 2: it works on the
  schema before and after the expand, which only adds nullable columns);
- ``split``: the code reads ``first_name`` / ``last_name`` (release 3, the migrate, whose
  backfill fills them before the code runs; and every release after it, so the contract that
  drops ``name`` breaks nothing).

Both read the same answer: ``"Ada Lovelace"`` is first name ``Ada``, last name ``Lovelace``; a
name without a space has no last name (``None``). The database URL comes from the environment
(``DATABASE_URL``) only, and is never logged or shown.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

SCHEMAS = ("name", "split")
LIMIT = 100


class PeopleConfigError(ValueError):
    """A setting the service cannot run with (never carries the database URL)."""


def baked_schema() -> str:
    try:
        text = resources.files("hello_service").joinpath("settings.toml").read_text()
    except FileNotFoundError:
        return "split"
    value = str(tomllib.loads(text).get("people_schema", "split"))
    if value not in SCHEMAS:
        raise PeopleConfigError(
            f"settings.toml people_schema {value!r} is not one of {', '.join(SCHEMAS)}"
        )
    return value


def split_name(name: str) -> tuple[str, str | None]:
    """``"Ada Lovelace"`` -> ``("Ada", "Lovelace")``; ``"Plato"`` -> ``("Plato", None)``.

    The same rule as the backfill in migrations/versions/0003 (so both code paths agree)."""
    first, sep, rest = name.partition(" ")
    return first, (rest if sep else None)


def engine_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class People:
    """Reads the people table; ``url`` None means this instance has no database."""

    def __init__(self, url: str | None, schema: str | None = None):
        self.schema = schema or baked_schema()
        if self.schema not in SCHEMAS:
            raise PeopleConfigError(f"people schema {self.schema!r} is not one of {SCHEMAS}")
        self.engine: Any = None
        if url:
            from sqlalchemy import create_engine
            from sqlalchemy.exc import ArgumentError, NoSuchModuleError

            target = engine_url(url)
            options: dict[str, Any] = {"pool_pre_ping": True}
            if target.startswith("postgresql"):
                options.update(
                    pool_size=2,
                    max_overflow=4,
                    pool_timeout=5,
                    connect_args={"connect_timeout": 5, "application_name": "hello-service"},
                )
            try:
                self.engine = create_engine(target, **options)
            except (ArgumentError, NoSuchModuleError, ValueError):
                # the message of these errors quotes the URL, which may hold a password
                raise PeopleConfigError(
                    "DATABASE_URL is not a database URL SQLAlchemy can use (value not shown)"
                ) from None

    @property
    def enabled(self) -> bool:
        return self.engine is not None

    def list(self, limit: int = LIMIT) -> list[dict[str, Any]]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            if self.schema == "name":
                rows = conn.execute(
                    text("SELECT id, name FROM people ORDER BY id LIMIT :n"), {"n": limit}
                )
                result = []
                for row in rows:
                    first, last = split_name(row.name)
                    result.append({"id": row.id, "first_name": first, "last_name": last})
                return result
            rows = conn.execute(
                text("SELECT id, first_name, last_name FROM people ORDER BY id LIMIT :n"),
                {"n": limit},
            )
            return [
                {"id": row.id, "first_name": row.first_name, "last_name": row.last_name}
                for row in rows
            ]

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
