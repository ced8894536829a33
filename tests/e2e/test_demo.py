"""`delivery demo` as a user runs it: its own process, Prefect's ephemeral API, no server. Two
services through one staging and production: hello-service's schema change (releases 1-4, its
own database) and httpbin beside it, each on its own frontends."""

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
        assert (
            "Both environments are running hello-service release 4 (1.3.0) from the same "
            "digest, and httpbin-service release 2 beside it" in demo.stdout
        )
        # the schema change travelled: each phase applied before its code, in both databases
        for n, revision in ((1, "0001"), (2, "0002"), (3, "0003"), (4, "0004")):
            assert f"Demo: delivering hello-service release {n}" in demo.stdout
            assert demo.stdout.count(f"schema at {revision}; code reads") == 2, demo.stdout
        for n in (1, 2):  # the second service, in turn with the first
            assert f"Demo: delivering httpbin-service release {n}" in demo.stdout

        status = subprocess.run(
            [delivery, "status", "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=home,
        )
        assert status.returncode == 0, status.stderr[-2000:]
        rows = {(r["environment"], r["service"]): r for r in json.loads(status.stdout)}
        assert set(rows) == {
            (e, s) for e in ("staging", "production") for s in ("hello-service", "httpbin-service")
        }
        report = {e: r for (e, s), r in rows.items() if s == "hello-service"}
        httpbin = {e: r for (e, s), r in rows.items() if s == "httpbin-service"}
        digests = {r["live"]["digest"] for r in report.values()}
        assert len(digests) == 1
        assert len({r["live"]["digest"] for r in httpbin.values()}) == 1
        urls = {r["url"] for r in rows.values()}
        assert len(urls) == 4  # a frontend per service per environment
        for name in ("staging", "production"):  # httpbin answers on its own frontend
            answer = httpx.get(httpbin[name]["url"] + "/get", timeout=5)
            assert answer.status_code == 200 and "headers" in answer.json()
            assert httpbin[name]["database"] is None  # registered without one
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
    assert "router:production/httpbin-service" in down.stdout
    for port in ports:
        try:
            httpx.get(f"http://127.0.0.1:{port}/version", timeout=2)
            raise AssertionError(f"port {port} still serves after `delivery down`")
        except httpx.HTTPError:
            pass
