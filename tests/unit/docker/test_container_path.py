"""Pure logic of the container path: error sorting, names, labels, checks. No engine needed."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from support.factories import release

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.errors import (
    ConfigError,
    GateFailed,
    InfrastructureError,
    is_retryable,
)
from prefect_delivery.blocks.registry import ImageRegistry, redact, registry_error
from prefect_delivery.blocks.release import Artifact, Instance
from prefect_delivery.blocks.routing.haproxy import HAProxyRouter
from prefect_delivery.blocks.targets.docker import (
    L_DIGEST,
    L_ENVIRONMENT,
    L_SCOPE,
    DockerTarget,
    container_labels,
    health_command,
    instance_from_labels,
    scope_for,
)
from prefect_delivery.blocks.targets.process import ProcessTarget
from prefect_delivery.tasks.build_image import WHEEL_DIR, dockerfile_path, make_context
from prefect_delivery.tasks.manifest import parse_manifest

DIGEST = "sha256:" + "4015" * 16  # contains "401" and "405": must never read as a status


def image_release(n: int = 1):
    rel = release(n)
    return rel.model_copy(
        update={
            "artifact": Artifact(
                kind="image",
                digest=DIGEST,
                uri=f"127.0.0.1:5000/svc@{DIGEST}",
                filename=f"127.0.0.1:5000/svc:{rel.commit}",
            )
        }
    )


# ---------------------------------------------------------------------------- registry errors
@pytest.mark.parametrize(
    ("message", "credentials", "kind", "words"),
    [
        (
            'Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
            False,
            InfrastructureError,
            ["did not answer", "registry-up.sh"],
        ),
        ("unexpected HTTP status: 503 Service Unavailable", False, InfrastructureError, []),
        (
            "login attempt to http://127.0.0.1:5001/v2/ failed with status: 401 Unauthorized",
            True,
            ConfigError,
            ["refused the login", "DockerRegistryCredentials"],
        ),
        ("no basic auth credentials", False, ConfigError, ["has no credentials"]),
        (
            "error parsing HTTP 405 response body: invalid character 'M'",
            False,
            ConfigError,
            ["refused pushing", "read-only"],
        ),
        ("denied: requested access to the resource is denied", True, ConfigError, ["refused"]),
    ],
)
def test_registry_errors_are_sorted_by_what_to_do(message, credentials, kind, words):
    error = registry_error("pushing", "r/svc:abc", message, "127.0.0.1:5001", credentials)
    assert isinstance(error, kind)
    assert is_retryable(error) is (kind is InfrastructureError)
    for word in words:
        assert word in str(error)


def test_a_missing_manifest_is_not_an_error_and_a_digest_is_not_a_status_code():
    missing = "manifest unknown: manifest unknown"
    assert registry_error("looking up", "r:x", missing, "a", False) is None
    error = registry_error("pulling", f"r@{DIGEST}", f"weird failure for r@{DIGEST}", "a", False)
    assert isinstance(error, InfrastructureError)  # not "unauthorized (401)", not "refused (405)"


def test_secrets_are_redacted():
    assert redact("user alice password hunter2!", ["hunter2", ""]) == "user alice password ***!"


# ---------------------------------------------------------------------------- build errors
def build_error(message: str, step: str):
    registry = ImageRegistry(build_args={"BASE_IMAGE": "127.0.0.1:5000/base:1"})
    return registry._build_error(
        message,
        step,
        deque(["Step 5/9 : RUN make"]),
        "r/s:x",
        {"BASE_IMAGE": "127.0.0.1:5000/base:1"},
    )


def test_build_errors():
    failed = build_error("The command '/bin/sh -c make' returned a non-zero code: 2", "RUN make")
    assert isinstance(failed, GateFailed) and failed.gate == "build"
    assert "`RUN make`" in str(failed) and "Step 5/9" in str(failed)
    base = build_error("manifest for 127.0.0.1:5000/base:1 not found", "FROM ${BASE_IMAGE}")
    assert isinstance(base, ConfigError) and "BASE_IMAGE=127.0.0.1:5000/base:1" in str(base)
    down = build_error('Get "http://127.0.0.1:5000/v2/": connection refused', "FROM x")
    assert isinstance(down, InfrastructureError)


# ---------------------------------------------------------------------------- names and checks
def test_repository_and_tag_are_the_full_sha_never_latest():
    registry = ImageRegistry(address="127.0.0.1:5000", namespace="team/a")
    sha = "a" * 40
    assert registry.tag_ref("svc", sha) == f"127.0.0.1:5000/team/a/svc:{sha}"
    for bad in ("latest", "a" * 12, "A" * 40):
        with pytest.raises(ConfigError, match="not a full commit SHA"):
            registry.tag_ref("svc", bad)
    hub = ImageRegistry(address="docker.io", namespace="me")
    assert hub.repository("svc") == "docker.io/me/svc"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("address", "http://127.0.0.1:5000"),
        ("address", "127.0.0.1:5000/ns"),
        ("namespace", "Team"),
        ("build_args", {"BAD-NAME": "x"}),
    ],
)
def test_image_registry_refuses_bad_config(field, value):
    with pytest.raises(ValidationError):
        ImageRegistry(**{field: value})


def test_manifest_refuses_a_fixed_image_tag():
    text = (
        '[service]\nname = "svc"\n[build]\nkind = "image"\nimage_tag = "latest"\n'
        '[run]\ncommand = ["python", "-m", "svc", "--port", "{port}"]\n'
    )
    with pytest.raises(ConfigError, match="full commit SHA"):
        parse_manifest(text)


def test_dockerfile_must_exist_inside_the_service(tmp_path):
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Dockerfile").write_text("FROM x\n")
    assert dockerfile_path(tmp_path, "svc", "docker/Dockerfile", "c" * 40) == "docker/Dockerfile"
    with pytest.raises(ConfigError, match="'Dockerfile' not found in the service at commit c{10}"):
        dockerfile_path(tmp_path, "svc", "Dockerfile", "c" * 40)
    for escape in ("../Dockerfile", "/etc/Dockerfile"):
        with pytest.raises(ConfigError, match="inside the service folder"):
            dockerfile_path(tmp_path, "svc", escape, "c" * 40)


def test_build_context_holds_the_tree_the_wheel_and_its_locked_dependencies(tmp_path):
    tree = tmp_path / "tree"
    (tree / "src").mkdir(parents=True)
    (tree / "Dockerfile").write_text("FROM x\n")
    wheel = tmp_path / "svc-1.0.0+gabc-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    dep = tmp_path / "dep-2.0-py3-none-any.whl"
    dep.write_bytes(b"dependency")
    args = make_context(tree, wheel, tmp_path / "ctx", [dep], "dep==2.0 --hash=sha256:ab\n")
    assert args == {
        "WHEEL": f"{WHEEL_DIR}/{wheel.name}",
        "REQUIREMENTS": f"{WHEEL_DIR}/requirements.txt",
    }
    assert (tmp_path / "ctx" / args["WHEEL"]).read_bytes() == b"wheel"
    assert (tmp_path / "ctx" / WHEEL_DIR / dep.name).read_bytes() == b"dependency"
    assert (tmp_path / "ctx" / args["REQUIREMENTS"]).read_text() == "dep==2.0 --hash=sha256:ab\n"
    assert (tmp_path / "ctx" / "Dockerfile").exists() and (tmp_path / "ctx" / "src").is_dir()


# ---------------------------------------------------------------------------- DockerTarget
def test_labels_rebuild_the_instance():
    rel = image_release()
    instance = Instance(
        id="stg-abc-blue-1",
        environment="stg",
        service="svc",
        slot="blue",
        release=rel,
        port=41234,
        started_at=datetime.now(UTC),
        handle="",
    )
    labels = container_labels(instance, "scope1")
    assert labels[L_SCOPE] == "scope1" and labels[L_ENVIRONMENT] == "stg"
    assert labels[L_DIGEST] == DIGEST
    back = instance_from_labels(labels, "c0ffee", alive=False)
    assert back == instance.model_copy(update={"handle": "c0ffee", "alive": False})
    assert instance_from_labels({"org.opencontainers.image.title": "x"}, "c", True) is None
    assert instance_from_labels({**labels, "org.prefect-delivery.port": "x"}, "c", True) is None


def test_health_check_probes_the_manifest_path_on_the_instance_port():
    rel = image_release()
    test = health_command(rel, "127.0.0.1", 41234)
    assert test[:3] == ["CMD", "python", "-c"]
    assert "'http://127.0.0.1:41234/healthz'" in test[3]
    other = rel.model_copy(
        update={"run": rel.run.model_copy(update={"command": ["/app/server", "{port}"]})}
    )
    assert health_command(other, "127.0.0.1", 1)[1] == "python3"


def test_docker_target_config():
    assert DockerTarget(scope="s").memory == "256m"
    assert scope_for("/a") == scope_for("/a") != scope_for("/b")
    for field, value in (("memory", "lots"), ("host", "0.0.0.0"), ("cpus", 0), ("scope", "A B")):
        with pytest.raises(ValidationError):
            DockerTarget(**{field: value})


def test_docker_target_refuses_wheels_and_tags_before_touching_the_engine():
    target = DockerTarget(scope="s")
    with pytest.raises(ConfigError, match="DockerTarget runs images"):
        target.prepare(release(1))
    tagged = image_release().model_copy(
        update={"artifact": Artifact(kind="image", digest=DIGEST, uri="127.0.0.1:5000/svc:latest")}
    )
    with pytest.raises(ConfigError, match="never by tag"):
        target.prepare(tagged)


def test_environment_takes_either_target(tmp_path):
    router = HAProxyRouter(name="stg", frontend_port=1, state_dir=str(tmp_path))
    for target in (ProcessTarget(state_dir=str(tmp_path)), DockerTarget(scope="s")):
        env = Environment(name="stg", target=target, router=router, state_dir=str(tmp_path))
        assert env.target is target or env.target == target
        assert type(Environment.model_validate(env.model_dump()).target) is type(target)
        # a target saved as its own block comes back from the server without block_type_slug
        data = env.model_dump()
        data["target"].pop("block_type_slug")
        assert type(Environment.model_validate(data).target) is type(target)


def test_tests_run_against_the_wheel_inside_the_image(tmp_path):
    import zipfile

    from prefect_delivery.tasks.test import prepare_test_tree

    wheel = tmp_path / "svc-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("svc/__init__.py", "X = 1\n")
    source = tmp_path / "work" / "src"
    (source / "tests").mkdir(parents=True)
    rel = image_release().model_copy(
        update={"artifact": image_release().artifact.model_copy(update={"wheel_uri": str(wheel)})}
    )
    unpacked = prepare_test_tree(source, rel, ["tests"])
    assert (Path(unpacked) / "svc" / "__init__.py").read_text() == "X = 1\n"


def test_setup_refuses_a_bad_registry_address_before_touching_anything(capsys, tmp_path):
    from prefect_delivery.flows.cli import EXIT_BAD_INPUT, main

    code = main(
        ["setup", "--target", "docker", "--registry", "http://r:5000", "--state-dir", str(tmp_path)]
    )
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("delivery: --registry: registry address 'http://r:5000'")
    assert "Fix:" in err
    assert list(tmp_path.iterdir()) == []
