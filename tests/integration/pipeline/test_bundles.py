"""Self-contained artifacts: a release runs from its own bundle, in its own virtualenv, with
the versions its lock chose, never the delivery tool's environment; two releases that pin two
versions of one library serve side by side during a canary."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import short_tmpdir

from prefect_delivery.blocks.routing.haproxy_runtime import IDENTITY_HEADER
from prefect_delivery.flows.deploy import deploy

PINNED = Path(__file__).parents[2] / "fixtures" / "pinned-service"
OLD, NEW = "0.8.10", "0.9.0"  # tabulate: the delivery tool has neither


def pinned_release(repo, store_root: str, tabulate: str, version: str):
    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.source import resolve_source

    pyproject = Path(repo.path) / "pyproject.toml"
    text = re.sub(r'tabulate==[0-9.]+"', f'tabulate=={tabulate}"', pyproject.read_text())
    text = re.sub(r'^version = "[^"]+"', f'version = "{version}"', text, flags=re.M)
    pyproject.write_text(text)
    sha = repo.commit_all(f"pinned-service {version}: tabulate {tabulate}")
    co = checkout.fn(resolve_source(repo.path, sha))
    return build.fn(co, ArtifactStore(root=store_root))


@pytest.fixture(scope="module")
def pinned():
    from prefect_delivery.flows.cli.demo import prepare_repo

    root = short_tmpdir("pd-pin-")
    repo = prepare_repo(root, source=PINNED)
    store = str(root / "artifacts")
    return {
        "old": pinned_release(repo, store, OLD, "1.0.0"),
        "new": pinned_release(repo, store, NEW, "2.0.0"),
    }


def test_the_delivery_tool_cannot_import_what_the_service_runs():
    proc = subprocess.run([sys.executable, "-c", "import tabulate"], capture_output=True)
    assert proc.returncode != 0 and b"ModuleNotFoundError" in proc.stderr


def test_each_bundle_locks_its_own_version_and_the_tests_ran_in_it(pinned):
    from prefect_delivery.blocks.artifacts import checked_bundle

    locked = {}
    for key, release in pinned.items():
        bundle, wheels = checked_bundle(release, with_tests=True)
        assert release.artifact.kind == "bundle"
        assert [w.file.split("-")[:2] for w in bundle.runtime] == [
            ["tabulate", OLD if key == "old" else NEW]
        ]
        assert any(w.file.startswith("pytest-") for w in bundle.test)
        assert bundle.lock_source.startswith("resolved at build")
        locked[key] = bundle.requirements
    assert locked["old"] != locked["new"]
    assert pinned["old"].digest != pinned["new"].digest


def test_two_releases_pinning_two_versions_serve_side_by_side_in_a_canary(make_env, pinned):
    env = make_env(
        "pin",
        kind="canary",
        instances=1,
        canary_steps=[50, 100],
        step_pause_s=3.0,
        analysis_interval_s=0.5,
        service="pinned-service",
    )
    first = deploy(env.name, pinned["old"])
    assert first.status == "deployed"
    seen: list[tuple[str, str, str]] = []
    done = threading.Event()

    def sample():
        with httpx.Client(timeout=5) as client:
            while not done.is_set():
                answer = client.get(env.url + "/lib")
                body = answer.json()
                seen.append((body["tabulate"], body["from"], answer.headers[IDENTITY_HEADER]))
                time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        outcome = deploy(env.name, pinned["new"])
    finally:
        done.set()
        sampler.join(10)
    assert outcome.status == "deployed", outcome
    versions = {v for v, _, _ in seen}
    assert versions == {OLD, NEW}, f"answers during the canary came from {versions}"
    # each answer imported its library from its own release's virtualenv, never the tool's
    venvs = {
        OLD: str(env.target.venv_dir(pinned["old"])),
        NEW: str(env.target.venv_dir(pinned["new"])),
    }
    assert all(where.startswith(venvs[v] + "/") for v, where, _ in seen)
    assert not any(where.startswith(sys.prefix + "/") for _, where, _ in seen)
    # the old release answered after the new one had started answering: side by side
    first_new = next(i for i, (v, _, _) in enumerate(seen) if v == NEW)
    assert any(v == OLD for v, _, _ in seen[first_new:])
