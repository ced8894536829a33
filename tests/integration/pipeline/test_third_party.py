"""A real open-source web application from PyPI (httpbin on gunicorn, examples/httpbin-service)
delivered through staging and production without a change to its code, from a delivery tool
that has none of its dependencies; its end-to-end checks gate every environment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support import short_tmpdir
from support.pipeline import deliver

from prefect_delivery.blocks.routing.haproxy_runtime import IDENTITY_HEADER

EXAMPLE = Path(__file__).parents[3] / "examples" / "httpbin-service"


@pytest.fixture
def httpbin_repo():
    from prefect_delivery.flows.cli.demo import prepare_repo

    root = short_tmpdir("pd-hb-")
    repo = prepare_repo(root, source=EXAMPLE)
    yield repo
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("module", ["httpbin", "flask", "gunicorn", "werkzeug"])
def test_the_delivery_tool_has_none_of_its_dependencies(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    assert proc.returncode != 0 and b"ModuleNotFoundError" in proc.stderr


@pytest.mark.slow
def test_httpbin_is_delivered_through_staging_and_production(
    httpbin_repo, make_env, artifact_store
):
    staging = make_env("hbs", service="httpbin-service")
    production = make_env(
        "hbp", kind="canary", canary_steps=[50, 100], bake_s=1.0, service="httpbin-service"
    )
    first = httpbin_repo.commit_all("httpbin 0.10.4 as it is")
    summary, error = deliver(httpbin_repo, first, [staging, production], artifact_store)
    assert error is None, summary.text()
    assert summary.outcome == "delivered"
    details = {s.stage: s.detail for s in summary.stages}
    for env in (staging, production):
        assert "checks: `pytest -q checks` passed" in details[env.name], details[env.name]
        answer = httpx.get(env.url + "/get?from=test", timeout=5)
        assert answer.status_code == 200 and answer.json()["args"] == {"from": "test"}
        assert answer.headers.get(IDENTITY_HEADER)  # the router names who answered
        assert {i.release.commit for i in env.running()} == {first}
    # gunicorn and httpbin come from the release's own virtualenv
    instance = production.running()[0]
    pid = int(instance.handle.split(":")[0])
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert argv[0].decode() == str(production.target.venv_dir(instance.release) / "bin" / "python")
    assert any(b"gunicorn" in part for part in argv)

    # a second commit whose end-to-end checks fail against the live environment: staging goes
    # back to the first release, production is never touched
    checks = Path(httpbin_repo.path) / "checks" / "test_live.py"
    checks.write_text(
        checks.read_text() + '\n\ndef test_a_teapot():\n    assert fetch("/status/418")[0] == 200\n'
    )
    second = httpbin_repo.commit_all("a check that the live service fails")
    summary, error = deliver(httpbin_repo, second, [staging, production], artifact_store)
    assert error is not None and summary.outcome == "failed"
    assert "end-to-end checks" in summary.reason and "failed" in summary.reason
    assert {i.release.commit for i in staging.running()} == {first}
    assert {i.release.commit for i in production.running()} == {first}
    failed = staging.ledger().last("failed")
    assert failed is not None and failed.release.commit == second
