"""A real third-party Alembic history, installed from PyPI at test time: JupyterHub.

JupyterHub (19 revisions since 2016) ships its migrations in its wheel
(``jupyterhub/alembic``); its env.py treats ``config.attributes['connection']`` as an Engine
and imports ``jupyterhub.orm``, so it only runs in an environment where JupyterHub is
installed: a virtualenv made here, handed to the lab as the release's interpreter.

Nothing of JupyterHub is copied into this repository except what a user adopting the lab
writes themselves: an ``alembic.ini`` pointing at the installed migrations (JupyterHub's own
is a template) and, for replaying the whole history, the 0.5 schema its first revision
assumes (tests/fixtures/jupyterhub/base_0_5.sql).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: the release under test, and the release production runs (its head is the baseline)
CURRENT = "jupyterhub==6.1.1"
PRODUCTION = "jupyterhub==4.1.6"
PRODUCTION_HEAD = "0eee8c825d24"
DRIVER = "psycopg[binary]"


def make_venvs(root: Path, specs: dict[str, str]) -> dict[str, Path]:
    """One virtualenv per name with ``spec`` and a PostgreSQL driver; built in parallel."""
    procs = {}
    for name, spec in specs.items():
        venv = root / name
        cmd = (f"{sys.executable} -m venv {venv} && {venv}/bin/pip install -q "
               f"--disable-pip-version-check '{spec}' '{DRIVER}'")
        procs[name] = (venv, subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True))
    out = {}
    for name, (venv, proc) in procs.items():
        log, _ = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"pip install {specs[name]} failed:\n{log[-3000:]}")
        out[name] = venv
    return out


def site_dir(venv: Path, package: str) -> Path:
    code = f"import {package}, os; print(os.path.dirname({package}.__file__))"
    return Path(subprocess.run([f"{venv}/bin/python", "-c", code], check=True,
                               capture_output=True, text=True).stdout.strip())


def production_schema(venv: Path, url: str, pg_dump: Path) -> str:
    """What a JupyterHub of ``venv`` creates on an empty database (create_all + stamp head),
    dumped the way a user dumps production: schema only, no owners, no privileges."""
    subprocess.run([f"{venv}/bin/python", "-c",
                    "import sys; from jupyterhub import orm; orm.new_session_factory(sys.argv[1])",
                    url], check=True, capture_output=True, text=True)
    return subprocess.run(
        [str(pg_dump), "--schema-only", "--no-owner", "--no-privileges", "-d",
         url.replace("postgresql+psycopg://", "postgresql://")],
        check=True, capture_output=True, text=True).stdout


def adoption_ini(folder: Path, alembic_dir: Path, settings: dict[str, str]) -> Path:
    """The alembic.ini a user writes to run the lab on JupyterHub's installed migrations."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["[alembic]", f"script_location = {alembic_dir}", "", "[migrations_lab]"]
    lines += [f"{k} = {v}" for k, v in settings.items()]
    ini = folder / "alembic.ini"
    ini.write_text("\n".join(lines) + "\n")
    return ini


#: Prefect's own server history (PostgreSQL), as this project's Prefect wheel from PyPI ships it
PREFECT_URL_ENV = "PREFECT_API_DATABASE_CONNECTION_URL"


def prefect_adoption(folder: Path, judged: int = 3) -> tuple[Path, list[str]]:
    """The alembic.ini a Prefect operator writes to run the lab on the installed Prefect's
    migrations (its own ini picks the versions folder per dialect at run time), with the
    baseline ``judged`` revisions before the head, and the revisions base first. env.py builds
    its own asyncpg engine from the setting above and runs from an AnyIO worker thread; it
    runs in a fresh process of this interpreter."""
    import prefect.server.database as db
    from alembic.script import ScriptDirectory

    migrations = Path(db.__file__).parent / "_migrations"
    versions = migrations / "versions" / "postgresql"
    script = ScriptDirectory(str(migrations), version_locations=[str(versions)])
    order = [s.revision for s in script.walk_revisions("base", "heads")][::-1]
    folder.mkdir(parents=True, exist_ok=True)
    ini = folder / "alembic.ini"
    ini.write_text("\n".join([
        "[alembic]", f"script_location = {migrations}", f"version_locations = {versions}",
        "path_separator = os", "", "[migrations_lab]", f"python = {sys.executable}",
        f"url_env = {PREFECT_URL_ENV}", "url_driver = postgresql+asyncpg",
        f"baseline = {order[-judged - 1]}", ""]))
    return ini, order
