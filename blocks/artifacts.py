"""ArtifactStore: where wheels built once per commit are kept, addressed by their digest."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from prefect_delivery.blocks.paths import atomic_write_json, default_state_dir
from prefect_delivery.blocks.registry import ImageRegistry
from prefect_delivery.blocks.release import Artifact
from prefect_delivery.blocks.wheel import sha256_file


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
