"""Bad input on the container path, through the pipeline: one clear message each, the run stops
before traffic moves, and the live release keeps serving.

One staging environment (DockerTarget) serves release 1.0.0 for the whole module; every test
tries to deliver something bad over it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import SteadyLoad, free_port, short_tmpdir
from support.docker import REGISTRY, LocalRegistry, delete_manifest, delivery_cli
from support.pipeline import (
    commit_release,
    deliver,
    register,
    served_version,
    verification_for_tests,
)

from prefect_delivery.blocks.errors import GateFailed
from prefect_delivery.flows.cli import EXIT_BAD_INPUT

pytestmark = pytest.mark.docker

PASSWORD = "pw-Live-staging-5521"
WRONG = "pw-Typo-in-block-9090"


@pytest.fixture(scope="module")
def live(state_dir, scope, docker_store):
    """(repo, staging, good commit): staging serves hello-service 1.0.0 from a container."""
    from prefect_delivery.blocks.settings import StrategySettings
    from prefect_delivery.blocks.targets.docker import DockerTarget
    from prefect_delivery.flows.cli.demo import prepare_repo, set_build_kind
    from prefect_delivery.flows.cli.setup import environment

    root = short_tmpdir("pd-irepo-")
    repo = prepare_repo(root)
    set_build_kind(repo, "image")
    staging = environment(
        "dlive",
        free_port(),
        str(state_dir),
        StrategySettings(kind="blue-green", keep_previous_s=0),
        0.0,
        False,
        verification_for_tests(),
        target=DockerTarget(scope=scope),
    )
    staging.save(staging.name, overwrite=True)
    staging = register(staging)
    good = commit_release(repo, "1.0.0")
    summary, error = deliver(repo, good, [staging], docker_store)
    assert error is None, summary.text()
    yield repo, staging, good
    for instance in staging.target.list(staging.name):
        staging.target.stop(instance, timeout_s=5)
    staging.router.stop()
    shutil.rmtree(root, ignore_errors=True)


def assert_still_serving(staging, commit):
    assert served_version(staging)["commit"] == commit
    alive = [i for i in staging.target.list(staging.name) if i.alive]
    assert {i.release.commit for i in alive} == {commit}
    assert {a: w for a, w in staging.router.weights().items() if w} == {alive[0].address: 200}


def run_cli(repo, staging, store):
    return delivery_cli(
        "run", repo.path, "--auto-approve", "--artifact-store", store, "--env", staging.name
    )


def last_task_run(name: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        [run] = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=name)),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    return run


def test_registry_down_is_retried_then_stops_the_run(live, image_registry, save_store):
    repo, staging, good = live
    down = image_registry.model_copy(update={"address": f"127.0.0.1:{free_port()}"})
    sha = commit_release(repo, "1.1.0")
    with SteadyLoad(staging.url) as load:
        summary, error = deliver(repo, sha, [staging], save_store(down))
    assert error is not None
    assert [(s.stage, s.result) for s in summary.stages] == [("build", "failed")]
    assert f"registry {down.address} did not answer" in summary.reason
    build_run = last_task_run("build")
    assert build_run.run_count == 3  # INFRA_RETRIES: a registry that is down is transient
    assert load.result.failed == 0 and set(load.result.versions) == {"1.0.0"}
    assert_still_serving(staging, good)


def test_wrong_password_one_message_no_secret(live, image_registry, save_store):
    from prefect_docker.credentials import DockerRegistryCredentials

    repo, staging, good = live
    auth = LocalRegistry(users={"alice": PASSWORD}).start()
    try:
        wrong = image_registry.model_copy(
            update={
                "address": auth.address,
                "credentials": DockerRegistryCredentials(
                    username="alice", password=WRONG, registry_url=auth.address
                ),
            }
        )
        commit_release(repo, "1.2.0")
        code, out, err = run_cli(repo, staging, save_store(wrong))
    finally:
        auth.stop()
    assert code == EXIT_BAD_INPUT, err
    assert f"bad input: ImageRegistry {auth.address} credentials:" in err
    assert "401 Unauthorized" in err and "Fix:" in err and "DockerRegistryCredentials" in err
    assert WRONG not in out + err and PASSWORD not in out + err
    assert last_task_run("build").run_count == 1  # bad config is never retried
    assert_still_serving(staging, good)


def test_missing_dockerfile_through_the_cli(live, docker_store):
    repo, staging, good = live
    (Path(repo.path) / "Dockerfile").unlink()
    repo.commit_all("no Dockerfile")
    code, _, err = run_cli(repo, staging, docker_store)
    shutil.copy(Path(__file__).parents[3] / "examples/hello-service/Dockerfile", repo.path)
    repo.commit_all("Dockerfile back")
    assert code == EXIT_BAD_INPUT, err
    assert "[build].dockerfile: 'Dockerfile' not found" in err and "Fix:" in err
    assert_still_serving(staging, good)


def test_a_digest_that_is_not_in_the_registry(live, image_registry, namespace, docker_client):
    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.flows.deploy import deploy
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.source import resolve_source

    repo, staging, good = live
    sha = commit_release(repo, "1.4.0")
    store = ArtifactStore(root=str(short_tmpdir("pd-store-")), registry=image_registry)
    release = build.fn(checkout.fn(resolve_source(repo.path, sha)), store)
    # The registry loses it (garbage collection, a wrong registry, a hand-made release), and
    # the engine has no copy either.
    delete_manifest(REGISTRY, f"{namespace}/hello-service", release.digest)
    docker_client.images.remove(release.artifact.uri, force=True)
    with SteadyLoad(staging.url) as load, pytest.raises(GateFailed) as err:
        deploy(staging.name, release)
    assert err.value.gate == "artifact"
    message = str(err.value)
    assert release.artifact.uri in message and "not in the registry" in message
    assert "deliver the commit again" in message
    assert load.result.failed == 0 and set(load.result.versions) == {"1.0.0"}
    assert_still_serving(staging, good)
    assert staging.ledger().entries()[-1].event == "failed"


def test_an_image_that_exits_at_start_never_takes_traffic(live, docker_store):
    repo, staging, good = live
    crash = commit_release(repo, "1.5.0", fault="crash")
    with SteadyLoad(staging.url) as load:
        summary, error = deliver(repo, crash, [staging], docker_store)
    assert error is not None
    assert [(s.stage, s.result) for s in summary.stages][-1] == (staging.name, "failed")
    message = str(error)
    assert "exited during start-up" in message and "[container exited with code 3]" in message
    assert "fault 'crash' set" in message
    assert load.result.failed == 0 and set(load.result.versions) == {"1.0.0"}
    assert_still_serving(staging, good)
    assert staging.ledger().entries()[-1].event == "failed"
