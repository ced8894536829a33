"""Artifacts: the ArtifactStore that keeps what a build made, and the one integrity check.

Every artifact is pinned by a digest. :func:`checked_wheel` is the only place that decides
whether the bytes on disk are the ones a release was built as: the process target runs them,
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

from prefect_delivery.blocks.errors import GateFailed, InfrastructureError
from prefect_delivery.blocks.paths import atomic_write_json, default_state_dir
from prefect_delivery.blocks.registry import ImageRegistry
from prefect_delivery.blocks.release import Artifact, Release


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


def checked_wheel(release: Release) -> Path:
    """The wheel a release runs (a wheel release) or installs (an image release), after
    checking it is there and, for a wheel release, that its bytes have the release's digest."""
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


class ArtifactStore(Block):
    """A folder of immutable build artifacts: one wheel per service and commit."""

    _block_type_name = "Artifact Store"
    _block_type_slug = "delivery-artifact-store"
    _description = "Keeps each wheel built by the pipeline, pinned by its sha256 digest."

    root: str = Field(
        default_factory=lambda: str(Path(default_state_dir()) / "artifacts"),
        description="Folder holding the artifacts.",
    )
    registry: ImageRegistry | None = Field(
        default=None,
        description="Where images are built and pushed, for services built as images "
        "([build].kind = 'image'); their wheels are kept here too.",
    )

    def _index(self, service: str, commit: str) -> Path:
        return Path(self.root) / service / f"{commit}.json"

    def find(self, service: str, commit: str) -> Artifact | None:
        """The artifact already built for this commit, if its file is intact."""
        try:
            artifact = Artifact.model_validate(json.loads(self._index(service, commit).read_text()))
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
