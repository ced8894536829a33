"""ProcessTarget with real hello-service wheels built by the build stage."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest
from support import short_tmpdir
from support.pipeline import commit_release

from prefect_delivery.blocks.artifacts import ArtifactIntegrityError
from prefect_delivery.blocks.release import Artifact
from prefect_delivery.blocks.targets.process import ProcessTarget


@pytest.fixture(scope="module")
def built_release(tmp_path_factory):
    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.flows.cli.demo import prepare_repo
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.source import resolve_source

    repo = prepare_repo(short_tmpdir())
    sha = commit_release(repo, "3.0.0")
    store = ArtifactStore(root=str(tmp_path_factory.mktemp("store")))
    co = checkout.fn(resolve_source(repo.path, sha))
    return build.fn(co, store)


def test_start_list_stop(built_release):
    target = ProcessTarget(state_dir=str(short_tmpdir()))
    instance = target.start(built_release, "t1", "blue")
    try:
        for _ in range(200):
            try:
                body = httpx.get(instance.url + "/version", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert body == {"version": "3.0.0", "commit": built_release.commit}
        # it runs on its bundle's virtualenv: the interpreter, and nothing on PYTHONPATH
        pid = int(instance.handle.split(":")[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[0].decode() == str(target.venv_dir(built_release) / "bin" / "python")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not any(v.startswith(b"PYTHONPATH=") for v in environ)
        listed = target.list("t1")
        assert [i.id for i in listed] == [instance.id] and listed[0].alive
        assert listed[0].release.digest == built_release.digest
    finally:
        target.stop(instance)
    assert target.list("t1") == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(instance.url + "/healthz", timeout=1)


HELLO_RUNTIME = ["starlette", "uvicorn", "sqlalchemy", "psycopg", "psycopg-binary"]


def test_the_tool_cannot_import_the_service():
    proc = subprocess.run([sys.executable, "-c", "import hello_service"], capture_output=True)
    assert proc.returncode != 0 and b"ModuleNotFoundError" in proc.stderr


def test_a_running_instance_loads_nothing_from_the_tools_environment(built_release):
    """The delivery tool needs starlette, uvicorn (Prefect's server), SQLAlchemy and psycopg
    (Alembic, the lab) itself, so hello-service's dependencies are all importable there: what
    counts is that the instance never takes them from there. Python's verbose mode makes the
    running instance name every file it imports: each of its packages comes from the bundle's
    virtualenv and none from the tool's site-packages; and the virtualenv's interpreter has no
    directory of the tool's on its path."""
    target = ProcessTarget(state_dir=str(short_tmpdir()))
    instance = target.start(built_release, "t3", "blue", env={"PYTHONVERBOSE": "1"})
    try:
        for _ in range(200):
            try:
                httpx.get(instance.url + "/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        venv = target.venv_dir(built_release)
        tool_sites = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
        log = target.logs(instance, lines=100_000)
        loaded = set(re.findall(r"(/\S+/site-packages/[^/\s']+)", log))
        packages = {path.rsplit("/", 1)[1] for path in loaded}
        assert {"starlette", "uvicorn", "hello_service"} <= packages, sorted(packages)
        assert all(path.startswith(f"{venv}/") for path in loaded), sorted(loaded)
        assert not any(path.startswith(site) for path in loaded for site in tool_sites)
    finally:
        target.stop(instance)
    probe = (
        "import json, sys, importlib.metadata as md; print(json.dumps({'path': sys.path, "
        "'dists': {n: str(md.distribution(n).locate_file('')) for n in sys.argv[1:]}}))"
    )
    seen = json.loads(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", probe, *HELLO_RUNTIME],
            check=True,
            capture_output=True,
            text=True,
            env={},
        ).stdout
    )
    assert not set(seen["path"]) & (tool_sites | {sys.prefix}), seen["path"]
    for name, where in seen["dists"].items():
        assert where.startswith(f"{venv}/"), (name, where)


def test_a_crashed_instance_is_listed_as_not_alive(built_release):
    target = ProcessTarget(state_dir=str(short_tmpdir()))
    instance = target.start(built_release, "t2", "blue", env={"HELLO_FAULT": "crash"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and target.list("t2")[0].alive:
        time.sleep(0.05)
    assert target.list("t2")[0].alive is False
    assert "crash" in target.logs(instance)
    target.stop(instance)


def copied_bundle(release, tmp_path: Path):
    """A copy of the release's bundle folder, to tamper with."""
    import shutil

    folder = tmp_path / "bundle"
    shutil.copytree(Path(release.artifact.uri).parent, folder)
    artifact = release.artifact.model_copy(update={"uri": str(folder / "bundle.json")})
    return folder, release.model_copy(update={"artifact": artifact})


def test_a_bundle_with_another_description_is_refused(built_release, tmp_path):
    folder, copy = copied_bundle(built_release, tmp_path)
    text = (folder / "bundle.json").read_text()
    (folder / "bundle.json").write_text(text.replace('"version": "3.0.0"', '"version": "3.0.1"'))
    target = ProcessTarget(state_dir=str(short_tmpdir()))
    with pytest.raises(ArtifactIntegrityError, match="refusing to run a different artifact"):
        target.prepare(copy)


def test_a_bundle_with_a_swapped_dependency_is_refused(built_release, tmp_path):
    folder, copy = copied_bundle(built_release, tmp_path)
    wheel = next((folder / "wheels").glob("starlette-*.whl"))
    data = wheel.read_bytes()
    wheel.unlink()
    wheel.write_bytes(data + b"x")
    target = ProcessTarget(state_dir=str(short_tmpdir()))
    with pytest.raises(ArtifactIntegrityError, match=r"starlette-.*sha256 differs"):
        target.prepare(copy)
    assert not target.venv_dir(copy).exists()


def test_a_bare_wheel_with_the_wrong_digest_is_refused(built_release, tmp_path):
    """A release built before bundles (a bare wheel) is still checked before it runs."""
    wheel = Path(built_release.artifact.wheel_uri)
    tampered = tmp_path / wheel.name
    tampered.write_bytes(wheel.read_bytes() + b"x")
    bad = built_release.model_copy(
        update={"artifact": Artifact(kind="wheel", digest=built_release.digest, uri=str(tampered))}
    )
    target = ProcessTarget(state_dir=str(short_tmpdir()))
    with pytest.raises(ArtifactIntegrityError, match="refusing to run a different artifact"):
        target.prepare(bad)


def _healthy(instance, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(instance.url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{instance.id} never answered")


def test_many_instances_started_at_once_get_their_own_ports_and_are_confirmed(built_release):
    """Twelve starts at once (what the stages of two deliveries and a rollback do on one host):
    twelve ports, each answered by the instance started on it; then a port taken by another
    program is refused, naming that program."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    from prefect_delivery.blocks.errors import InfrastructureError

    target = ProcessTarget(state_dir=str(short_tmpdir()))
    target.prepare(built_release)
    with ThreadPoolExecutor(max_workers=12) as pool:
        started = list(pool.map(lambda n: target.start(built_release, "t4", f"g{n}"), range(12)))
    try:
        assert len({i.port for i in started}) == 12
        for instance in started:
            _healthy(instance)
            target.confirm(instance)  # its own process listens there
        # every instance answers with its own identity
        assert {i.id for i in started} == {i.id for i in target.list("t4") if i.alive}
        # another program on an instance's port: the launch is refused, and says who holds it
        squatted = started[0]
        target.stop(squatted)
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", squatted.port))
            squatter.listen()
            with pytest.raises(InfrastructureError) as info:
                target.confirm(squatted)
        import os

        assert f"port {squatted.port}" in str(info.value) and f"pid {os.getpid()}" in str(
            info.value
        )
        assert "not its own" in str(info.value)
    finally:
        for instance in started:
            target.stop(instance)
