"""Wall time of `lab check` on a real third-party history and on hello-service.

    python -m bench.lab [--cache DIR] [--repeat 1]

Projects:

- hello-service (examples/, 4 revisions, in the lab's interpreter);
- JupyterHub 6.1.1 from PyPI (19 revisions since 2016, env.py in its own virtualenv through
  ``--python``), twice: the whole history replayed from the 0.5 schema its first revision
  assumes, and adopted with a baseline at the 4.1.6 production head (the schema a JupyterHub
  4.1.6 created itself, pg_dumped), the six newer revisions judged in full;
- Prefect's own server history (PostgreSQL, over a hundred revisions since 2021, from this
  project's Prefect wheel), the whole history from an empty database with the last three
  judged (env.py in a fresh process of this interpreter: asyncpg, an AnyIO worker thread).

For each: the wall time of ``python -m prefect_delivery.migrations_lab check`` as a
subprocess, measured by this script's clock (includes interpreter start and the cluster's
initdb), then the split reported by ``check(timings=...)`` from one in-process run: plan+lint
(revisions read and rendered offline through env.py, lint), cluster start (initdb + start of
an ephemeral PostgreSQL), round trips (seed, snapshots, upgrade/downgrade/upgrade per
revision). Virtualenvs are made once under ``--cache`` (pip from PyPI). Printed, not asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefect_delivery.migrations_lab import LocalPostgres, check
from prefect_delivery.migrations_lab.postgres import find_bindir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.real_history import (  # noqa: E402
    CURRENT,
    PRODUCTION,
    PRODUCTION_HEAD,
    adoption_ini,
    make_venvs,
    prefect_adoption,
    production_schema,
    site_dir,
)


def _venvs(cache: Path) -> dict[str, Path]:
    wanted = {"current": CURRENT, "production": PRODUCTION}
    have = {n: cache / n for n in wanted if (cache / n / "bin" / "python").exists()}
    missing = {n: s for n, s in wanted.items() if n not in have}
    if missing:
        print(f"making virtualenvs for {', '.join(missing.values())} in {cache} ...", flush=True)
        have |= make_venvs(cache, missing)
    return have


def _dump(venv: Path, out: Path) -> Path:
    if not out.exists():
        with LocalPostgres() as pg, pg.database() as db:
            out.write_text(production_schema(venv, db.url.get_secret_value(),
                                             find_bindir() / "pg_dump"))
    return out


def _cli_seconds(path: Path) -> tuple[float, int]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "prefect_delivery.migrations_lab", "check",
                           str(path)], capture_output=True, text=True)
    return time.monotonic() - started, proc.returncode


def _split(path: Path) -> tuple[dict[str, float], int, str]:
    timings: dict[str, float] = {}
    report = check(path, timings=timings)
    rts = [r for r in report.revisions if r.roundtrip and r.roundtrip.status != "skipped"]
    return timings, len(report.revisions), f"{len(rts)} round-tripped, " + (
        "PASS" if report.ok else f"FAIL ({report.errors} errors)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "prefect-delivery-bench-lab")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    venvs = _venvs(args.cache)
    alembic_dir = site_dir(venvs["current"], "jupyterhub") / "alembic"
    dump = _dump(venvs["production"], args.cache / "jupyterhub-4.1.6-schema.sql")
    projects = {
        "hello-service": ROOT / "examples/hello-service/src/hello_service/migrations",
        "jupyterhub, whole history": adoption_ini(args.cache / "replay", alembic_dir, {
            "python": str(venvs["current"]), "baseline": "99a28a4418e1",
            "base_schema": str(ROOT / "tests" / "fixtures" / "jupyterhub" / "base_0_5.sql")}),
        "jupyterhub, baseline 4.1.6": adoption_ini(args.cache / "adopt", alembic_dir, {
            "python": str(venvs["current"]), "baseline": PRODUCTION_HEAD,
            "baseline_schema": str(dump)}),
        "prefect, whole history": prefect_adoption(args.cache / "prefect")[0],
    }
    print(f"\n{'project':28} {'revs':>4} {'wall (cli)':>10} {'plan+lint':>9} "
          f"{'cluster':>8} {'round trips':>11}  result")
    for name, path in projects.items():
        for _ in range(args.repeat):
            wall, code = _cli_seconds(path)
            t, revs, result = _split(path)
            print(f"{name:28} {revs:>4} {wall:>9.1f}s {t.get('plan+lint', 0):>8.1f}s "
                  f"{t.get('cluster start', 0):>7.1f}s {t.get('round trips', 0):>10.1f}s  "
                  f"{result} (exit {code})", flush=True)


if __name__ == "__main__":
    main()
