"""Locate an Alembic project and build in-memory ``Config`` objects for the lab.

The lab never writes to a project's files. It works on any Alembic project whose ``env.py``
follows the Alembic cookbook: online, use ``config.attributes["connection"]`` when given;
offline, take the URL from ``config.attributes["url"]`` or ``sqlalchemy.url``. As a safety
net the lab also overrides ``sqlalchemy.url`` *in memory* with the database it is working on,
so an ``env.py`` that builds its own engine never reaches a database named in ``alembic.ini``.
``config.attributes["configure_logger"]`` is set to False (the cookbook flag that tells
``env.py`` not to call ``fileConfig`` and reset the host's logging).
"""

from __future__ import annotations

import contextlib
import logging.config
import os
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from prefect_delivery.migrations_lab.driver import Driver, InProcess, ReleaseInterpreter
from prefect_delivery.migrations_lab.envrun import StepFailed
from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.settings import DEFAULT_URL_ENV
from prefect_delivery.migrations_lab.urls import UrlLike, reveal

#: The URL handed to env.py when rendering SQL offline; it is never connected to.
OFFLINE_URL = "postgresql+psycopg://lab@127.0.0.1/lab_offline"


@contextlib.contextmanager
def host_logging_kept() -> Iterator[None]:
    """Run an Alembic command without letting ``env.py`` reconfigure the host's logging.

    A stock ``alembic init`` env.py calls ``logging.config.fileConfig(alembic.ini)``, whatever
    ``configure_logger`` says; that disables every logger the host process already has (in a
    delivery: Prefect's, whose records then never reach the API). The call is a no-op here."""
    original = logging.config.fileConfig
    logging.config.fileConfig = lambda *args, **kwargs: None
    try:
        yield
    finally:
        logging.config.fileConfig = original


@dataclass(frozen=True)
class RevisionScript:
    """One revision file as Alembic sees it."""

    revision: str
    down_revisions: tuple[str, ...]
    path: Path
    #: the revision's declarations (phase, release, drops, replaces, waivers) and __doc__
    module: ModuleType | SimpleNamespace

    @property
    def down_revision(self) -> str | None:
        return self.down_revisions[0] if len(self.down_revisions) == 1 else None

    @property
    def doc(self) -> str:
        return self.module.__doc__ or ""

    def attr(self, name: str, default: Any = None) -> Any:
        return getattr(self.module, name, default)


class AlembicProject:
    """An Alembic project: a folder holding ``alembic.ini``, or the ini file itself."""

    def __init__(self, path: str | os.PathLike[str], *, ini_section: str = "alembic",
                 python: str | None = None, url_env: list[str] | None = None,
                 url_driver: str | None = None,
                 timeouts: dict[str, int] | None = None):
        p = Path(path).expanduser()
        if p.is_dir():
            ini = p / "alembic.ini"
            if not ini.is_file():
                raise LabConfigError(
                    f"project path {p}",
                    "holds no alembic.ini.",
                    "pass the folder that contains alembic.ini, or the ini file itself",
                )
        elif p.is_file():
            ini = p
        else:
            raise LabConfigError(
                f"project path {p}", "does not exist.", "pass an Alembic project's folder"
            )
        self.ini_path = ini.resolve()
        self.root = self.ini_path.parent
        self.ini_section = ini_section
        self._script_location = self._resolve_script_location()
        #: the release's interpreter that runs env.py (None: this one), see driver.py
        self.python = python
        self.url_env = list(url_env) if url_env is not None else list(DEFAULT_URL_ENV)
        self.url_driver = url_driver
        self.timeouts = dict(timeouts or {})
        self._driver: Driver | None = None
        self._scripts: tuple[list[RevisionScript], list[str]] | None = None

    @property
    def script_location(self) -> str:
        return self._script_location

    @property
    def driver(self) -> Driver:
        """Runs env.py: in this interpreter, or in the release's (``python``)."""
        if self._driver is None:
            setup = {"ini_path": str(self.ini_path), "ini_section": self.ini_section,
                     "script_location": self._script_location, "url_env": self.url_env,
                     "url_driver": self.url_driver,
                     "timeouts": self.timeouts, "offline_url": OFFLINE_URL}
            self._driver = (ReleaseInterpreter(self.python, setup, self.root) if self.python
                            else InProcess(setup))
        return self._driver

    def restart(self) -> None:
        """The next command starts a fresh env.py process (the release's interpreter): what
        env.py cached while rendering offline (Prefect caches its database interface, with
        the offline URL) never reaches the rehearsal."""
        if self.python:
            self.close()

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    def __repr__(self) -> str:
        return f"AlembicProject({str(self.ini_path)!r})"

    def _resolve_script_location(self) -> str:
        cfg = Config(str(self.ini_path), ini_section=self.ini_section)
        loc = cfg.get_main_option("script_location")
        if not loc:
            raise LabConfigError(
                f"{self.ini_path} [{self.ini_section}]",
                "has no script_location.",
                "add `script_location = %(here)s/migrations` (the folder with env.py)",
            )
        if ":" in loc and not os.path.isabs(loc) and not Path(loc).exists():
            return loc  # package resource form, e.g. "myapp:migrations"
        candidate = Path(loc)
        if not candidate.is_absolute():
            here_relative = self.root / candidate
            candidate = here_relative if here_relative.exists() else Path.cwd() / candidate
        if not (candidate / "env.py").is_file():
            raise LabConfigError(
                f"{self.ini_path} script_location={loc!r}",
                f"points at {candidate}, which holds no env.py.",
                "point script_location at the migrations folder (use %(here)s)",
            )
        return str(candidate.resolve())

    # -- configs -------------------------------------------------------------------------
    def config(
        self,
        *,
        url: UrlLike | None = None,
        connection: Connection | None = None,
        buffer: StringIO | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> Config:
        """A fresh in-memory Config; online when ``connection`` is given."""
        cfg = Config(str(self.ini_path), ini_section=self.ini_section, output_buffer=buffer)
        cfg.set_main_option("script_location", self._script_location.replace("%", "%%"))
        target = reveal(url).render_as_string(hide_password=False) if url else OFFLINE_URL
        cfg.set_main_option("sqlalchemy.url", target.replace("%", "%%"))
        cfg.attributes["configure_logger"] = False
        cfg.attributes["url"] = target
        cfg.attributes["migrations_lab"] = True
        if connection is not None:
            cfg.attributes["connection"] = connection
        if attributes:
            cfg.attributes.update(attributes)
        return cfg

    def script_directory(self) -> ScriptDirectory:
        try:
            return ScriptDirectory.from_config(self.config())
        except CommandError as exc:
            raise LabConfigError(
                f"{self.ini_path}", f"Alembic cannot read the revisions: {exc}",
                "fix the revision files (alembic history must work)",
            ) from None

    # -- revisions -----------------------------------------------------------------------
    def _load(self) -> tuple[list[RevisionScript], list[str]]:
        if self._scripts is None:
            try:
                data = self.driver.scripts()
            except StepFailed as exc:
                where = (f" (in the interpreter {self.python})" if self.python else
                         " (in the lab's interpreter; name the release's with --python)")
                raise LabConfigError(
                    f"{self.ini_path}",
                    f"Alembic cannot read the revisions{where}: {exc.info.get('type')}: "
                    f"{exc.info.get('message')}",
                    "fix the revision files (alembic history must work); if they import the "
                    "project's packages, run the lab with the release's interpreter "
                    "(--python PATH or `python` in the lab settings)",
                ) from None
            scripts = [RevisionScript(
                revision=d["revision"], down_revisions=tuple(d["down_revisions"]),
                path=Path(d["path"]), module=SimpleNamespace(__doc__=d["doc"], **d["attrs"]),
            ) for d in data["revisions"]]
            self._scripts = (scripts, list(data["heads"]))
        return self._scripts

    def scripts(self) -> list[RevisionScript]:
        """All revisions, base first (topological order)."""
        return list(self._load()[0])

    def heads(self) -> list[str]:
        return list(self._load()[1])

    def relpath(self, path: Path) -> str:
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)


_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "build", "dist",
              ".tox", ".ruff_cache", ".pytest_cache"}


def find_alembic_ini(root: str | os.PathLike[str]) -> Path | None:
    """The one ``alembic.ini`` at or below ``root`` (e.g. a service folder whose migrations
    live inside its package, or an unpacked wheel); None when there is none.

    Raises ``LabConfigError`` when there are several (say which to use)."""
    base = Path(root)
    if (base / "alembic.ini").is_file():
        return base / "alembic.ini"
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in _SKIP_DIRS and not d.endswith(".egg-info"))
        if "alembic.ini" in filenames:
            found.append(Path(dirpath) / "alembic.ini")
    if len(found) > 1:
        raise LabConfigError(
            f"project path {base}",
            f"holds {len(found)} Alembic projects: {', '.join(str(f) for f in found)}.",
            "pass the one to check (its folder or its alembic.ini)",
        )
    return found[0] if found else None
