"""Build stage, container path: one image per commit, tagged with the full SHA, pinned by digest.

Called by the build task (tasks/build.py) when the manifest says ``[build] kind = "image"``;
lint has run before. The image installs the bundle the process path would run (tasks/build.py
``make_bundle``: the service's wheel, version ``X+g<sha>`` with ``_release.json``, and every
dependency locked as pinned wheels), so the image, the environment the tests run in and the
instances all carry the same commit stamp and the same versions.

    bundle (reused from the ArtifactStore when this commit was built before)
    -> registry has <registry>/<service>:<sha>?  yes: reuse its digest (build once per commit)
    -> no: build context = the commit's tree + the bundle's runtime wheels and its locked
       requirements (with hashes) in .delivery-wheel/; docker-py build (logs streamed into the
       run's log) with build args WHEEL (the service wheel's path in the context),
       REQUIREMENTS (the requirements' path) and the ImageRegistry's own (e.g. BASE_IMAGE);
       push; digest = the registry's manifest digest, from RepoDigests.

The Dockerfile's contract (see examples/hello-service/Dockerfile): ``ARG BASE_IMAGE`` before
``FROM ${BASE_IMAGE}``; ``COPY .delivery-wheel/``, then ``pip install --no-index --find-links
... --require-hashes -r $REQUIREMENTS`` and the ``$WHEEL`` itself: nothing floats at image build.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

from prefect_delivery.blocks.artifacts import ArtifactStore, checked_bundle_of, sha256_file
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


#: the locked runtime requirements, in the build context (REQUIREMENTS)
REQUIREMENTS_FILE = "requirements.txt"


def image_labels(service: str, version: str, commit: str, bundle: Artifact) -> dict[str, str]:
    """Labels baked into the image (OCI annotations plus the wheel and bundle it installs)."""
    return {
        "org.opencontainers.image.title": service,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": commit,
        f"{LABEL_PREFIX}.wheel-digest": sha256_file(Path(bundle.wheel_uri or "")),
        f"{LABEL_PREFIX}.bundle-digest": bundle.digest,
    }


def make_context(
    tree: Path, wheel: Path, dest: Path, wheels: list[Path] = (), requirements: str = ""
) -> dict[str, str]:
    """Copy the commit's tree, the service's wheel, the wheels of its locked dependencies and
    their requirements into a build context; returns the build args WHEEL and REQUIREMENTS."""
    shutil.copytree(tree, dest, dirs_exist_ok=True)
    folder = dest / WHEEL_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for path in [wheel, *wheels]:
        shutil.copyfile(path, folder / path.name)
    (folder / REQUIREMENTS_FILE).write_text(requirements)
    return {
        "WHEEL": f"{WHEEL_DIR}/{wheel.name}",
        "REQUIREMENTS": f"{WHEEL_DIR}/{REQUIREMENTS_FILE}",
    }


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
    from prefect_delivery.tasks.build import build_wheel, make_bundle  # the process path's

    logger = run_logger()
    manifest = co.manifest
    service, commit = manifest.service.name, co.source.commit
    tree = Path(co.path)
    registry = require_registry(store, service)
    dockerfile = dockerfile_path(tree, service, manifest.build.dockerfile, commit)

    bundled = store.find(service, commit, "bundle")
    if bundled is None:
        with tempfile.TemporaryDirectory(prefix="pd-build-") as tmp:
            built, version = build_wheel(co, Path(tmp))
            bundled = store.put_bundle(make_bundle(co, built, version, store))
        logger.info(
            "Built %s (%s), the bundle the image installs", bundled.filename, bundled.digest
        )
    version = (bundled.filename or "").split("-")[1].split("+")[0]

    repository = registry.repository(service)
    tag = registry.tag_ref(service, commit)
    with registry.client() as client:
        digest = registry.lookup(client, tag)
        if digest is not None:
            logger.info("Commit already built once: reusing %s (%s)", tag, digest)
        else:
            bundle, wheels = checked_bundle_of(bundled)
            with tempfile.TemporaryDirectory(prefix="pd-image-") as tmp:
                context = Path(tmp) / "context"
                args = make_context(
                    tree,
                    wheels / bundle.wheel.file,
                    context,
                    [wheels / w.file for w in bundle.runtime],
                    bundle.install_requirements(),
                )
                logger.info("Building %s from %s (%s)", tag, dockerfile, registry.build_args)
                image_id = registry.build(
                    client,
                    context,
                    dockerfile,
                    tag,
                    args,
                    image_labels(service, version, commit, bundled),
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
            wheel_uri=bundled.wheel_uri,
            bundle_uri=bundled.uri,
            bundle_digest=bundled.digest,
        ),
        run=manifest.run_spec(),
        author=co.source.author,
    )
