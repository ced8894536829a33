"""The delivery flow on the container path: real engine, registry, HAProxy and Prefect server.

Same strategies, router, analysis and rollback as the process path; only the environments'
target (DockerTarget) and the manifest's build kind (image) differ.
"""

from __future__ import annotations

import pytest
from support import SteadyLoad
from support.docker import REGISTRY, registry_digest
from support.pipeline import commit_release, deliver, served_version

from prefect_delivery.blocks.targets.docker import L_COMMIT, L_DIGEST

pytestmark = pytest.mark.docker


def stage_results(summary) -> dict[str, str]:
    return {s.stage: s.result for s in summary.stages}


def containers_of(env) -> list[dict]:
    """The engine's view of an environment's running containers."""
    return [env.target.inspect(i) for i in env.target.list(env.name) if i.alive]


def test_build_once_deploy_everywhere_by_digest_then_roll_back(
    image_repo, make_docker_env, docker_store, namespace, docker_client
):
    from prefect_delivery.flows.rollback import rollback

    staging, production = make_docker_env("stg"), make_docker_env("prd", bake_s=1.0)
    first = commit_release(image_repo, "1.0.0")
    summary, error = deliver(image_repo, first, [staging, production], docker_store)
    assert error is None, summary.text()
    release_1 = summary.release
    assert served_version(production)["commit"] == first

    second = commit_release(image_repo, "2.0.0")
    with SteadyLoad(staging.url) as load_stg, SteadyLoad(production.url) as load_prd:
        summary, error = deliver(image_repo, second, [staging, production], docker_store)
    assert error is None, summary.text()
    assert list(stage_results(summary)) == [
        "build",
        "test",
        staging.name,
        production.name,
        f"monitor {production.name}",
    ]
    release_2 = summary.release
    assert release_2.artifact.kind == "image" and release_2.digest != release_1.digest
    # blue-green on containers: the old release served until the new one took over
    for load in (load_stg, load_prd):
        assert load.result.failed == 0, load.result.statuses
        assert load.result.versions["1.0.0"] > 0 and load.result.versions["2.0.0"] > 0

    # Build once, deploy everywhere: the digest that passed staging's verification (ledger) is
    # the digest the registry holds for the commit's tag, and the image both environments'
    # containers run, by digest, as the engine reports it.
    verified = staging.ledger().last("verified")
    assert verified is not None and verified.release.commit == second
    digest = verified.release.digest
    assert registry_digest(REGISTRY, f"{namespace}/hello-service", second) == digest
    assert production.ledger().last("verified").release.digest == digest
    stg, prd = containers_of(staging), containers_of(production)
    assert len(stg) == 1 and len(prd) == 1
    for container in (stg[0], prd[0]):
        assert container["image"] == f"{REGISTRY}/{namespace}/hello-service@{digest}"
        assert container["image"] in container["repo_digests"]
        assert container["labels"][L_DIGEST] == digest
        assert container["labels"][L_COMMIT] == second
    assert stg[0]["image_id"] == prd[0]["image_id"]
    assert served_version(staging) == served_version(production)

    # Rollback on demand: release 1 was retired after the cutover, so it is started again
    # from its digest (pulled from the registry), verified, and takes the traffic back.
    docker_client.images.remove(release_1.artifact.uri, force=True)
    outcome = rollback(environment=production.name, reason="test")
    assert outcome.status == "rolled-back" and outcome.restarted
    assert served_version(production)["commit"] == first
    [back] = containers_of(production)
    assert back["image"] == release_1.artifact.uri
    assert staging.ledger().last("verified").release.digest == digest  # staging untouched
