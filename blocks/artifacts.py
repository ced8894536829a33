"""Artifacts: the ArtifactStore that keeps what a build made, and the one integrity check.

Every artifact is pinned by a digest. :func:`checked_bundle` (a bundle: bundle.json and every
wheel it names) and :func:`checked_wheel` (the service's own wheel, of any kind of release) are
the only places that decide whether the bytes on disk are the ones a release was built as: the
process target runs them,
the test stage tests them, the migration stage reads the release's migrations from them. Bytes
that differ are a verdict (``ArtifactIntegrityError``, gate "artifact"): no retry makes them the
bytes that were built, so the fix is to deliver the commit again. A file the store does not
show right now is a fault of the store (``InfrastructureError``: a network share that is
briefly away comes back), retried, then reported with the same fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import zipfile
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from prefect_delivery.blocks.bundle import BUNDLE_FILE, Bundle, WheelPool, problems
from prefect_delivery.blocks.errors import GateFailed, InfrastructureError
from prefect_delivery.blocks.paths import atomic_write_json, default_state_dir
from prefect_delivery.blocks.registry import ImageRegistry
from prefect_delivery.blocks.release import Artifact, Release
from prefect_delivery.blocks.schema_cache import SchemaOnce


class ArtifactIntegrityError(GateFailed):
    """The artifact on disk is missing or is not the one that was built (digest mismatch)."""

    def __init__(self, reason: str):
        super().__init__("artifact", reason)


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def checked_bundle(release: Release, with_tests: bool = False) -> tuple[Bundle, Path]:
    """The release's bundle (a bundle release's own, or the one an image installs) and its
    wheel folder, after checking that bundle.json has the digest the release recorded and that
    every wheel it names is there with its sha256."""
    artifact = release.artifact
    if artifact.kind == "image":
        if not artifact.bundle_uri or not artifact.bundle_digest:
            raise ArtifactIntegrityError(
                f"image release {release.label} records no bundle (built before bundles); "
                "deliver its commit again so it is rebuilt."
            )
        return checked_bundle_of(
            artifact.model_copy(
                update={"uri": artifact.bundle_uri, "digest": artifact.bundle_digest}
            ),
            release.label,
            with_tests,
        )
    return checked_bundle_of(artifact, release.label, with_tests)


def checked_bundle_of(
    artifact: Artifact, label: str | None = None, with_tests: bool = False
) -> tuple[Bundle, Path]:
    """``checked_bundle`` for a bundle artifact (``label`` names its release in errors)."""
    label = label or artifact.filename or artifact.uri
    path = Path(artifact.uri)
    if not path.is_file():
        raise InfrastructureError(
            f"bundle {path} of release {label} is missing from the artifact store. "
            "If it does not come back, deliver its commit again so it is rebuilt, or restore "
            "the artifact store."
        )
    actual = sha256_file(path)
    if actual != artifact.digest:
        raise ArtifactIntegrityError(
            f"bundle {path} has digest {actual}, but release {label} was built as "
            f"{artifact.digest}; refusing to run a different artifact. Rebuild it."
        )
    bundle = Bundle.model_validate_json(path.read_bytes())
    wheels = path.parent / "wheels"
    found = problems(bundle, wheels, with_tests)
    if found:
        raise ArtifactIntegrityError(
            f"release {label}: {'; '.join(found[:3])}; refusing to run a different "
            "artifact. Rebuild it (deliver its commit again)."
        )
    return bundle, wheels


def checked_wheel(release: Release) -> Path:
    """The service's wheel of a release (which a wheel release runs, an image installs and the
    migration stage reads), after checking it is there and has the bytes that were built."""
    if release.artifact.kind == "bundle":
        bundle, wheels = checked_bundle(release)
        return wheels / bundle.wheel.file
    uri = release.artifact.uri if release.artifact.kind == "wheel" else release.artifact.wheel_uri
    if not uri:
        raise ArtifactIntegrityError(
            f"release {release.label} records no wheel; rebuild it (deliver its commit "
            "again: the container path keeps the wheel it installs)."
        )
    wheel = Path(uri)
    if not wheel.is_file():
        raise InfrastructureError(
            f"artifact {wheel} of release {release.label} is missing from the artifact store. "
            "If it does not come back, deliver its commit again so it is rebuilt, or restore "
            "the artifact store."
        )
    if release.artifact.kind == "wheel":
        actual = sha256_file(wheel)
        if actual != release.digest:
            raise ArtifactIntegrityError(
                f"artifact {wheel.name} has digest {actual}, but release {release.label} was "
                f"built as {release.digest}; refusing to run a different artifact. Rebuild it."
            )
    return wheel


def unpack_wheel(wheel: Path, dest: Path) -> Path:
    """Unpack a wheel into ``dest`` atomically (a pure-Python wheel is importable as unpacked)."""
    if (dest / ".complete").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp-{uuid.uuid4().hex[:6]}")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp)
    (tmp / ".complete").write_text(wheel.name)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


class ArtifactStore(SchemaOnce, Block):
    """A folder of immutable build artifacts: one per service and commit (a bundle, or the
    wheel an image installs), and the pool of wheels the bundles share."""

    _block_type_name = "Artifact Store"
    _block_type_slug = "delivery-artifact-store"
    _description = (
        "Keeps each artifact built by the pipeline (a bundle of locked wheels, or the wheel an "
        "image installs), pinned by its sha256 digest."
    )

    root: str = Field(
        default_factory=lambda: str(Path(default_state_dir()) / "artifacts"),
        description="Folder holding the artifacts.",
    )
    registry: ImageRegistry | None = Field(
        default=None,
        description="Where images are built and pushed, for services built as images "
        "([build].kind = 'image'); their wheels are kept here too.",
    )

    def _index(self, service: str, commit: str, kind: str = "wheel") -> Path:
        suffix = ".bundle.json" if kind == "bundle" else ".json"
        return Path(self.root) / service / f"{commit}{suffix}"

    @property
    def pool(self) -> WheelPool:
        return WheelPool(Path(self.root))

    def find(self, service: str, commit: str, kind: str = "wheel") -> Artifact | None:
        """The artifact already built for this commit, if its file is intact (for a bundle:
        its bundle.json; every wheel is checked where it is used)."""
        try:
            index = self._index(service, commit, kind)
            artifact = Artifact.model_validate(json.loads(index.read_text()))
        except (OSError, ValueError):
            return None
        path = Path(artifact.uri)
        if not path.exists() or sha256_file(path) != artifact.digest:
            return None
        return artifact

    def put(self, service: str, commit: str, wheel: Path) -> Artifact:
        """Copy a freshly built wheel in, record its digest; the first build of a commit wins."""
        existing = self.find(service, commit)
        if existing is not None:
            return existing
        digest = sha256_file(wheel)
        folder = Path(self.root) / service / digest.split(":", 1)[1]
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / wheel.name
        tmp = folder / f".{wheel.name}.tmp"
        shutil.copyfile(wheel, tmp)
        os.replace(tmp, dest)
        artifact = Artifact(kind="wheel", digest=digest, uri=str(dest), filename=wheel.name)
        atomic_write_json(self._index(service, commit), artifact.model_dump(mode="json"))
        return artifact

    def put_bundle(self, bundle: Bundle) -> Artifact:
        """Keep a bundle whose wheels are in the pool; the first build of a commit wins."""
        existing = self.find(bundle.service, bundle.commit, "bundle")
        if existing is not None:
            return existing
        digest = bundle.digest
        folder = Path(self.root) / bundle.service / digest.split(":", 1)[1]
        self.pool.link_into(bundle.files(with_tests=True), folder / "wheels")
        path = folder / BUNDLE_FILE
        tmp = folder / f".{BUNDLE_FILE}.tmp-{uuid.uuid4().hex[:6]}"
        tmp.write_bytes(bundle.canonical())
        os.replace(tmp, path)
        artifact = Artifact(
            kind="bundle",
            digest=digest,
            uri=str(path),
            filename=bundle.wheel.file,
            wheel_uri=str(folder / "wheels" / bundle.wheel.file),
        )
        atomic_write_json(
            self._index(bundle.service, bundle.commit, "bundle"), artifact.model_dump(mode="json")
        )
        return artifact
