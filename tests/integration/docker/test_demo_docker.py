"""`delivery demo --target docker` as a user runs it (its own process), then `delivery down`.

It runs on the session's Prefect server (saving the ephemeral API's start-up); the images it
pushes (127.0.0.1:5000/hello-service:<sha of the demo's own commits>) are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pytest
from support import VENV_BIN, free_port, short_tmpdir
from support.docker import REGISTRY, delete_manifest, registry_digest

pytestmark = pytest.mark.docker


def test_demo_target_docker_delivers_by_digest_and_down_removes_the_containers(docker_client):
    home = short_tmpdir("pd-ddemo-")
    env = dict(os.environ, DELIVERY_STATE_DIR=str(home / "state"))
    ports = [str(free_port()), str(free_port())]
    delivery = str(VENV_BIN / "delivery")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [delivery, *args], capture_output=True, text=True, timeout=900, env=env, cwd=home
        )

    commits: list[str] = []
    try:
        demo = cli(
            "demo",
            "--target",
            "docker",
            "--staging-port",
            ports[0],
            "--production-port",
            ports[1],
            "--bake-s",
            "1",
        )
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert f"built FROM {REGISTRY}/prefect-delivery/python-web:3.11" in demo.stdout
        assert "Both environments are running hello-service release 4 (1.3.0)" in demo.stdout
        repo = home / "state" / "demo" / "hello-service"
        commits = subprocess.run(
            ["git", "-C", str(repo), "log", "--format=%H"], capture_output=True, text=True
        ).stdout.split()

        status = cli("status", "--json", "--env", "staging", "--env", "production")
        report = {r["environment"]: r for r in json.loads(status.stdout)}
        digest = report["production"]["live"]["digest"]
        assert report["staging"]["live"]["digest"] == digest
        assert report["production"]["live"]["commit"] == commits[0]
        assert registry_digest(REGISTRY, "hello-service", commits[0]) == digest
        for name in ("staging", "production"):
            # the instances that take traffic (the previous release may be kept warm beside)
            serving = [i for i in report[name]["instances"] if i["weight"] > 0]
            assert serving and {i["commit"] for i in serving} == {commits[0]}, serving
            instance = serving[0]
            container = docker_client.containers.get(
                next(
                    c.id
                    for c in docker_client.containers.list()
                    if c.labels.get("org.prefect-delivery.instance") == instance["id"]
                )
            )
            assert container.attrs["Config"]["Image"] == f"{REGISTRY}/hello-service@{digest}"
            # `docker ps` says whose it is: environment and service in its name and labels
            assert f"{name}-hello-service-" in container.name
            assert container.labels["org.prefect-delivery.service"] == "hello-service"
            assert container.attrs["HostConfig"]["NetworkMode"] == "host"
            body = httpx.get(f"http://127.0.0.1:{ports[0 if name == 'staging' else 1]}/version")
            assert body.json() == {"version": "1.3.0", "commit": commits[0]}
            # the container got its environment's database (DATABASE_URL, never argv)
            people = httpx.get(
                f"http://127.0.0.1:{ports[0 if name == 'staging' else 1]}/api/people"
            ).json()
            assert people["database"] is True and people["schema"] == "split"
            assert not any("postgresql" in arg for arg in container.attrs["Config"]["Cmd"])
        ids = [i["id"] for r in report.values() for i in r["instances"]]
    finally:
        down = cli("down", "--env", "staging", "--env", "production")
        for sha in commits:
            found = registry_digest(REGISTRY, "hello-service", sha)
            if found:
                delete_manifest(REGISTRY, "hello-service", found)
            try:
                docker_client.images.remove(f"{REGISTRY}/hello-service:{sha}", force=True)
            except Exception:  # noqa: BLE001 - not built (a failed demo) or already gone
                pass
    assert down.returncode == 0, down.stderr
    left = [
        c
        for c in docker_client.containers.list(all=True)
        if c.labels.get("org.prefect-delivery.instance") in ids
    ]
    assert left == []
