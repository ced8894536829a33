"""ProcessTarget with real hello-service wheels built by the build stage."""

from __future__ import annotations

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
