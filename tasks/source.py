"""Source of a delivery: a service folder inside a git repository, pinned to one commit.

Everything downstream (lint, build, tests, the manifest itself) reads the tree of that commit
exported with ``git archive``, never the working copy, so a run is reproducible and a dirty
checkout cannot leak into a release.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from pydantic import BaseModel

from prefect_delivery.blocks.errors import ConfigError, InfrastructureError

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


class SourceRef(BaseModel):
    repo: str  # absolute path of the repository's top level
    subdir: str  # service folder relative to it ('' for the top level)
    commit: str  # full 40-hex SHA
    author: str | None = None  # "Name <email>" of the commit's author


def _git(repo: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=not binary, timeout=120
        )
    except FileNotFoundError:
        raise ConfigError(
            "git", "is not installed.", "install git (apt-get install git)."
        ) from None


def resolve_source(service_dir: str | Path, commit: str | None = None) -> SourceRef:
    """Find the repository holding ``service_dir`` and resolve ``commit`` (default HEAD)."""
    folder = Path(service_dir).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(
            f"service folder {service_dir}",
            "does not exist.",
            "pass the folder that holds the service's delivery.toml.",
        )
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ConfigError(
            f"service folder {folder}",
            "is not inside a git repository; a release is built from a commit.",
            "run `git init && git add -A && git commit` there, or point at a checkout.",
        )
    repo = Path(top.stdout.strip()).resolve()
    wanted = "HEAD" if commit in (None, "") else str(commit)
    if wanted.startswith("-"):
        raise ConfigError("commit", f"{wanted!r} is not a commit id.", "pass a SHA or a ref.")
    rev = _git(repo, "rev-parse", "--verify", "--quiet", f"{wanted}^{{commit}}")
    if rev.returncode != 0:
        raise ConfigError(
            "commit",
            f"{wanted!r} is not a commit of the repository {repo}.",
            "pass a full or abbreviated SHA (or a branch/tag) that exists there; "
            "fetch it first if it came from CI.",
        )
    sha = rev.stdout.strip()
    subdir = folder.relative_to(repo).as_posix()
    who = _git(repo, "show", "-s", "--format=%an <%ae>", sha)
    return SourceRef(
        repo=str(repo),
        subdir="" if subdir == "." else subdir,
        commit=sha,
        author=who.stdout.strip() or None if who.returncode == 0 else None,
    )


def manifest_at(ref: SourceRef):  # -> tasks.manifest.ServiceManifest
    """The service's manifest as it is at the commit (read with ``git show``, before anything
    is exported or built: a delivery of a service with no route is refused first)."""
    from prefect_delivery.tasks.manifest import MANIFEST_NAME, parse_manifest

    path = f"{ref.subdir}/{MANIFEST_NAME}" if ref.subdir else MANIFEST_NAME
    shown = _git(Path(ref.repo), "show", f"{ref.commit}:{path}")
    if shown.returncode != 0:
        raise ConfigError(
            f"{path} at {ref.commit[:10]}",
            "is not in the commit: every service needs a delivery.toml manifest.",
            "commit one; see examples/hello-service/delivery.toml.",
        )
    return parse_manifest(shown.stdout, f"{path} at {ref.commit[:10]}")


def service_name_at(ref: SourceRef) -> str:
    """The service's name as its manifest at the commit says."""
    return manifest_at(ref).service.name


def export_tree(ref: SourceRef, dest: Path) -> Path:
    """Write the service folder as it is at the commit into ``dest`` (replacing it)."""
    args = ["archive", "--format=tar", ref.commit]
    if ref.subdir:
        args += ["--", ref.subdir]
    out = _git(Path(ref.repo), *args, binary=True)
    if out.returncode != 0:
        raise InfrastructureError(
            f"git archive of {ref.commit[:10]} failed: {out.stderr.decode(errors='replace')}"
        )
    staging = dest.with_name(dest.name + ".export")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as archive:
        archive.extractall(staging, filter="data")
    root = staging / ref.subdir if ref.subdir else staging
    if not root.exists():
        raise ConfigError(
            f"service folder {ref.subdir}",
            f"does not exist at commit {ref.commit[:10]} (is it committed?).",
            "commit the service folder, then run again.",
        )
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    root.rename(dest)
    shutil.rmtree(staging, ignore_errors=True)
    return dest


def commit_time(ref: SourceRef) -> int:
    out = _git(Path(ref.repo), "show", "-s", "--format=%ct", ref.commit)
    try:
        return int(out.stdout.strip())
    except ValueError:
        return 315532800  # 1980-01-01, the earliest a zip timestamp can say
