"""`delivery demo` as a user runs it: its own process, Prefect's ephemeral API, no server."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
from support import VENV_BIN, free_port, short_tmpdir


def test_demo_leaves_both_environments_on_the_final_release_from_one_digest():
    home = short_tmpdir("pd-demo-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.pop("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", None)
    env.update(PREFECT_HOME=str(home / "prefect"), DELIVERY_STATE_DIR=str(home / "state"))
    ports = [str(free_port()), str(free_port())]
    delivery = str(VENV_BIN / "delivery")
    try:
        demo = subprocess.run(
            [
                delivery,
                "demo",
                "--staging-port",
                ports[0],
                "--production-port",
                ports[1],
                "--bake-s",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
            cwd=home,
        )
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "Both environments are running release 4 (1.3.0)" in demo.stdout
        # the schema change travelled: each phase applied before its code, in both databases
        for n, revision in ((1, "0001"), (2, "0002"), (3, "0003"), (4, "0004")):
            assert f"Demo: delivering release {n}" in demo.stdout
            assert demo.stdout.count(f"schema at {revision}; code reads") == 2, demo.stdout

        status = subprocess.run(
            [delivery, "status", "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=home,
        )
        assert status.returncode == 0, status.stderr[-2000:]
        report = {r["environment"]: r for r in json.loads(status.stdout)}
        assert set(report) == {"staging", "production"}
        digests = {r["live"]["digest"] for r in report.values()}
        assert len(digests) == 1
        for name, port in zip(("staging", "production"), ports, strict=True):
            assert report[name]["url"] == f"http://127.0.0.1:{port}"
            assert report[name]["live"]["version"] == "1.3.0"
            served = httpx.get(report[name]["url"] + "/version", timeout=5).json()
            assert served == {"version": "1.3.0", "commit": report[name]["live"]["commit"]}
            assert report[name]["database"]["revision"] == "0004"
            assert "***@127.0.0.1" in report[name]["database"]["url"]  # masked
            body = httpx.get(report[name]["url"] + "/api/people", timeout=5).json()
            assert body["database"] is True and body["schema"] == "split"
    finally:
        down = subprocess.run(
            [delivery, "down"], capture_output=True, text=True, timeout=300, env=env, cwd=home
        )
    assert down.returncode == 0, down.stderr[-2000:]
    assert "postgres:staging" in down.stdout and "postgres:production" in down.stdout
    for port in ports:
        try:
            httpx.get(f"http://127.0.0.1:{port}/version", timeout=2)
            raise AssertionError(f"port {port} still serves after `delivery down`")
        except httpx.HTTPError:
            pass
