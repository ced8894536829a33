"""The lab's settings for one project: where its history starts being judged, how its env.py
finds the database, which interpreter runs it.

Read from two places (later wins), then from the command line:

1. the ``[migrations_lab]`` section of the project's ``alembic.ini``::

       [migrations_lab]
       baseline = 4621fec11365           # revisions up to this one are history
       url_env = DATABASE_URL HUB_DB_URL # env vars env.py may read the URL from
       url_driver = postgresql+asyncpg   # the driver in those URLs (an async env.py)
       python = /srv/hub/.venv/bin/python
       base_schema = %(here)s/base.sql   # schema the first revision expects
       baseline_schema = %(here)s/prod.sql  # or: the schema at the baseline (a dump)

2. the ``[lab]`` table of the nearest ``delivery.toml`` at or above the ini file::

       [lab]
       baseline = "4621fec11365"
       url_env = ["DATABASE_URL", "HUB_DB_URL"]
       python = ".venv/bin/python"       # relative to the delivery.toml
       base_schema = "db/base.sql"
       baseline_schema = "db/prod-schema.sql"

``baseline``: revisions up to and including it are *history*: planned and round-tripped, but
not required to carry phase annotations or to pass lint. Everything after it is judged in full.
``url_env``: the lab sets every one of these variables (default :data:`DEFAULT_URL_ENV`) to
the ephemeral database while env.py runs, so an env.py that reads one never sees another
database. ``url_driver``: the SQLAlchemy dialect+driver written into those variables
(default: the driver the interpreter has, psycopg or else psycopg2), for an env.py that builds
an engine of its own with another driver (Prefect's builds an asyncpg one). ``python``: an
interpreter (or a virtualenv folder) with the release's own
dependencies; env.py and the revisions then run in a subprocess of it. ``base_schema``: SQL
run on the empty database before the first revision, for a history whose first revision
assumes tables Alembic did not create. ``baseline_schema``: the schema *at the baseline*
(``pg_dump --schema-only --no-owner --no-privileges`` of a database that runs the baseline,
e.g. production): the lab starts from it, stamped at the baseline, and round-trips the history
from the top down instead of replaying it upwards (for a history that cannot be replayed from
an empty database: one that relies on ``create_all`` for some tables, or whose old revisions
no longer run with today's libraries).
"""

from __future__ import annotations

import configparser
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prefect_delivery.migrations_lab.errors import LabConfigError

INI_SECTION = "migrations_lab"
TOML_NAME = "delivery.toml"
TOML_TABLE = "lab"

#: Environment variables env.py files commonly read the database URL from.
DEFAULT_URL_ENV = (
    "DATABASE_URL",
    "DB_URL",
    "SQLALCHEMY_DATABASE_URI",
    "SQLALCHEMY_DATABASE_URL",
    "SQLALCHEMY_URL",
    "POSTGRES_URL",
    "POSTGRESQL_URL",
)


class LabSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    baseline: str | None = None
    url_env: list[str] = Field(default_factory=lambda: list(DEFAULT_URL_ENV))
    url_driver: str | None = None
    python: str | None = None
    base_schema: str | None = None
    baseline_schema: str | None = None
    #: where each value came from (for messages): key -> "alembic.ini [migrations_lab]" ...
    sources: dict[str, str] = Field(default_factory=dict)

    @field_validator("url_env")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @field_validator("url_driver")
    @classmethod
    def _driver(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"postgresql(\+[a-z0-9_]+)?", value):
            raise ValueError(f"{value!r} is not a PostgreSQL dialect+driver such as "
                             "postgresql+asyncpg")
        return value

    def source(self, key: str) -> str:
        return self.sources.get(key, key)


def find_delivery_toml(start: Path) -> Path | None:
    """The nearest delivery.toml in ``start`` or above it (stops at a git root)."""
    for folder in [start, *start.parents]:
        if (folder / TOML_NAME).is_file():
            return folder / TOML_NAME
        if (folder / ".git").exists():
            return None
    return None


def _from_ini(ini: Path) -> tuple[dict[str, Any], str]:
    parser = configparser.ConfigParser(defaults={"here": str(ini.parent)})
    where = f"{ini} [{INI_SECTION}]"
    try:
        parser.read(ini)
    except configparser.Error as exc:
        raise LabConfigError(str(ini), f"is not a valid ini file: {exc}.", "fix its syntax") \
            from None
    if not parser.has_section(INI_SECTION):
        return {}, where
    raw = {k: v for k, v in parser.items(INI_SECTION) if k != "here"}
    if "url_env" in raw:
        raw["url_env"] = raw["url_env"].replace(",", " ").split()
    for key in ("python", "base_schema", "baseline_schema"):
        if raw.get(key):
            raw[key] = str((ini.parent / raw[key]).expanduser())
    return raw, where


def _from_toml(path: Path) -> tuple[dict[str, Any], str]:
    where = f"{path} [{TOML_TABLE}]"
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise LabConfigError(str(path), f"is not valid TOML ({exc}).", "fix the syntax") \
            from None
    raw = data.get(TOML_TABLE, {})
    if not isinstance(raw, dict):
        raise LabConfigError(where, "is not a table.", f"write it as [{TOML_TABLE}]")
    raw = dict(raw)
    for key in ("python", "base_schema", "baseline_schema"):
        if isinstance(raw.get(key), str) and raw[key]:
            raw[key] = str((path.parent / raw[key]).expanduser())
    return raw, where


def load_settings(ini_path: Path, **overrides: Any) -> LabSettings:
    """Settings for the project at ``ini_path``; ``overrides`` (not None) come from the CLI."""
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers = [_from_ini(ini_path)]
    toml = find_delivery_toml(ini_path.parent)
    if toml is not None:
        layers.append(_from_toml(toml))
    cli = {k: v for k, v in overrides.items() if v is not None}
    layers.append((cli, "the command line"))
    for raw, where in layers:
        try:
            LabSettings.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = ("is not a lab setting (known: baseline, url_env, url_driver, python, "
                       "base_schema, baseline_schema)")
            raise LabConfigError(f"{where} {key}", f"{msg}.",
                                 "see migrations_lab/settings.py for the settings") from None
        for key, value in raw.items():
            merged[key] = value
            sources[key] = f"{where} {key}"
    settings = LabSettings.model_validate({**merged, "sources": sources})
    if settings.baseline_schema and not settings.baseline:
        raise LabConfigError(settings.source("baseline_schema"),
                             "is set without a baseline (the revision the schema is at).",
                             "set `baseline` to the revision the dumped database was at")
    if settings.baseline_schema and settings.base_schema:
        raise LabConfigError(settings.source("baseline_schema"),
                             "and base_schema are both set; the database starts from one.",
                             "keep baseline_schema (start at the baseline) or base_schema "
                             "(replay the history from the schema its first revision expects)")
    return settings


def resolve_python(value: str, where: str) -> str:
    """An interpreter path from ``python`` (an interpreter or a virtualenv folder)."""
    p = Path(os.path.abspath(Path(value).expanduser()))  # absolute, symlinks kept (a venv)
    if p.is_dir():
        for candidate in (p / "bin" / "python", p / "Scripts" / "python.exe"):
            if candidate.is_file():
                return str(candidate)
        raise LabConfigError(where, f"{p} is a folder without bin/python.",
                             "name the release's virtualenv or its interpreter")
    if not p.is_file() or not os.access(p, os.X_OK):
        raise LabConfigError(where, f"{p} is not an executable interpreter.",
                             "name the release's virtualenv or its bin/python")
    return str(p)
