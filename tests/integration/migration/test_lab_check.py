"""`delivery lab check examples/hello-service`: the sample service's migrations pass the lab."""

from __future__ import annotations

import subprocess

import pytest
from support import ROOT, VENV_BIN

pytestmark = pytest.mark.postgres


def test_delivery_lab_check_passes_on_hello_service_with_a_report_per_revision():
    from prefect_delivery.migrations_lab.errors import PostgresNotFound
    from prefect_delivery.migrations_lab.postgres import find_bindir

    try:
        find_bindir()
    except PostgresNotFound as exc:
        pytest.skip(str(exc))
    run = subprocess.run(
        [str(VENV_BIN / "delivery"), "lab", "check", "examples/hello-service"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "hello_service/migrations/alembic.ini" in run.stderr  # found inside the package
    for line in (
        "0001  expand  release 1  versions/0001_create_people.py  ok",
        "0002  expand  release 2  versions/0002_split_name_expand.py  ok",
        "0003  migrate  release 3  versions/0003_split_name_backfill.py  ok",
        "0004  contract  release 4  versions/0004_split_name_contract.py  ok",
    ):
        assert line in out, out
    assert out.count("round trip: passed (seed:ok upgrade:ok downgrade:ok upgrade again:ok)") == 4
    # the split's backfill is kept by the migrate's downgrade (reported, not hidden)
    assert "people.first_name" in out and "people.last_name" in out
    assert out.rstrip().endswith("result: PASS (0 errors, 0 warnings)")
