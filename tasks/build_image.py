"""Build stage, container path: one image per commit, tagged with the full SHA, pinned by digest.

Called by the build task (tasks/build.py) when the manifest says ``[build] kind = "image"``;
lint has run before. The image contains the service's wheel built by the wheel path
(``build_wheel``: version ``X+g<sha>``, ``_release.json``), so the image, the wheel the tests run
against and the instances all carry the same commit stamp.

    wheel (reused from the ArtifactStore when this commit was built before)
    -> registry has <registry>/<service>:<sha>?  yes: reuse its digest (build once per commit)
    -> no: build context = the commit's tree + the wheel; docker-py build (logs streamed into the
       run's log) with build args WHEEL (its path in the context) and the ImageRegistry's own
       (e.g. BASE_IMAGE); push; digest = the registry's manifest digest, from RepoDigests.

The Dockerfile's contract (see examples/hello-service/Dockerfile): ``ARG BASE_IMAGE`` before
``FROM ${BASE_IMAGE}``, and ``ARG WHEEL`` + ``COPY ${WHEEL} ...`` + ``pip install`` it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

from prefect_delivery.blocks.artifacts import ArtifactStore
from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.registry import ImageRegistry
from prefect_delivery.blocks.release import Artifact, Release
from prefect_delivery.blocks.targets.docker_labels import LABEL_PREFIX
from prefect_delivery.tasks.runtime.log import run_logger

#: Folder of the build context that receives the service wheel (WHEEL is a path under it).
WHEEL_DIR = ".delivery-wheel"


def dockerfile_path(tree: Path, service: str, dockerfile: str, commit: str) -> str:
    """The manifest's Dockerfile, relative to the service folder; ConfigError when missing."""
    relative = PurePosixPath(dockerfile)
    where = f"{service} delivery.toml [build].dockerfile"
    if relative.is_absolute() or ".." in relative.parts:
        raise ConfigError(
            where,
            f"{dockerfile!r} must be a path inside the service folder.",
            "give a relative path such as 'Dockerfile' or 'docker/Dockerfile'.",
        )
    if not (tree / relative).is_file():
        raise ConfigError(
            where,
            f"{dockerfile!r} not found in the service at commit {commit[:10]}; "
            "[build].kind = 'image' builds the service from a Dockerfile.",
            "add and commit a Dockerfile (see examples/hello-service/Dockerfile), point "
            "[build].dockerfile at yours, or use [build].kind = 'wheel'.",
        )
    return relative.as_posix()


def image_labels(service: str, version: str, commit: str, wheel: Artifact) -> dict[str, str]:
    """Labels baked into the image (OCI annotations plus the wheel it was made from)."""
    return {
        "org.opencontainers.image.title": service,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": commit,
        f"{LABEL_PREFIX}.wheel-digest": wheel.digest,
    }


def make_context(tree: Path, wheel: Path, dest: Path) -> str:
    """Copy the commit's tree and the wheel into a build context; returns WHEEL (its path)."""
    shutil.copytree(tree, dest, dirs_exist_ok=True)
    folder = dest / WHEEL_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    shutil.copyfile(wheel, folder / wheel.name)
    return f"{WHEEL_DIR}/{wheel.name}"


def require_registry(store: ArtifactStore, service: str) -> ImageRegistry:
    if store.registry is None:
        raise ConfigError(
            "ArtifactStore block `registry`",
            f"is not set, but {service} is built as an image ([build].kind = 'image') and images "
            "are pushed to a registry.",
            "run `delivery setup --target docker`, or save an ImageRegistry block and reference it "
            "from the ArtifactStore block's `registry` field.",
        )
    return store.registry


def build_image_release(co, store: ArtifactStore) -> Release:
    """The build stage for ``[build] kind = "image"`` (``co`` is a tasks.build.Checkout)."""
    from prefect_delivery.tasks.build import build_wheel  # the wheel path of the build stage

    logger = run_logger()
    manifest = co.manifest
    service, commit = manifest.service.name, co.source.commit
    tree = Path(co.path)
    registry = require_registry(store, service)
    dockerfile = dockerfile_path(tree, service, manifest.build.dockerfile, commit)

    wheel = store.find(service, commit)
    if wheel is None:
        with tempfile.TemporaryDirectory(prefix="pd-build-") as tmp:
            built, _ = build_wheel(co, Path(tmp))
            wheel = store.put(service, commit, built)
        logger.info("Built %s (%s), the wheel the image installs", wheel.filename, wheel.digest)
    version = (wheel.filename or "").split("-")[1].split("+")[0]

    repository = registry.repository(service)
    tag = registry.tag_ref(service, commit)
    with registry.client() as client:
        digest = registry.lookup(client, tag)
        if digest is not None:
            logger.info("Commit already built once: reusing %s (%s)", tag, digest)
        else:
            with tempfile.TemporaryDirectory(prefix="pd-image-") as tmp:
                context = Path(tmp) / "context"
                wheel_arg = make_context(tree, Path(wheel.uri), context)
                logger.info("Building %s from %s (%s)", tag, dockerfile, registry.build_args)
                image_id = registry.build(
                    client,
                    context,
                    dockerfile,
                    tag,
                    {"WHEEL": wheel_arg},
                    image_labels(service, version, commit, wheel),
                    lambda line: logger.info("docker build: %s", line),
                )
            logger.info("Built image %s (%s); pushing", tag, image_id)
            digest = registry.push(client, repository, commit, lambda line: logger.info(line))
            logger.info("Pushed %s: digest %s", tag, digest)
    return Release(
        service=service,
        version=version,
        commit=commit,
        artifact=Artifact(
            kind="image",
            digest=digest,
            uri=f"{repository}@{digest}",
            filename=tag,
            wheel_uri=wheel.uri,
        ),
        run=manifest.run_spec(),
        author=co.source.author,
    )
