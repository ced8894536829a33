"""Build stage: check out the commit, lint it, build one immutable artifact for it.

The wheel's version carries the full commit SHA as a local label (``1.0.0+g<sha>``) and the
package gets ``_release.json`` (version, commit), so every instance can say what it is. The
artifact is a bundle (blocks/bundle.py): that wheel and every dependency, locked once
(tasks/lock.py), as wheels pinned by sha256; the sha256 of its bundle.json is the release's
digest. It is built once per commit and reused afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from prefect import task
from pydantic import BaseModel

from prefect_delivery.blocks.artifacts import ArtifactStore
from prefect_delivery.blocks.bundle import Bundle
from prefect_delivery.blocks.errors import ConfigError, GateFailed, InfrastructureError, quoted
from prefect_delivery.blocks.release import Release
from prefect_delivery.blocks.targets.venv import uv
from prefect_delivery.tasks.lock import PYTHON, fetch_wheels, locked_set
from prefect_delivery.tasks.manifest import ServiceManifest, load_manifest
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.retry import INFRA_RETRIES
from prefect_delivery.tasks.source import SourceRef, commit_time, export_tree
from prefect_delivery.tasks.stamp import stamp_version, wheel_version


class Checkout(BaseModel):
    """The service's tree at one commit, exported to a workspace, with its manifest."""

    source: SourceRef
    path: str
    manifest: ServiceManifest


def workspace(service: str, commit: str) -> Path:
    """Where a commit is exported, built and tested: ``$DELIVERY_WORK_DIR`` (default
    ``<temp>/prefect-delivery-work``), one folder per service and commit, kept so that a later
    delivery of the commit reuses its test virtualenv; nothing reads it once a delivery ends."""
    root = os.environ.get("DELIVERY_WORK_DIR")
    if not root:
        return Path(tempfile.gettempdir(), "prefect-delivery-work", service, commit)
    # absolute, as DELIVERY_STATE_DIR: the shards and the checks run in other working folders
    base = Path(root).expanduser().resolve()
    return base / service / commit


@task(name="checkout", **INFRA_RETRIES)
def checkout(source: SourceRef) -> Checkout:
    """Export the commit's service folder and read its manifest from that tree."""
    name = Path(source.subdir or source.repo).name or "service"
    dest = export_tree(source, workspace(name, source.commit) / "src")
    manifest = load_manifest(dest)
    missing = [p for p in manifest.test.paths if not (dest / p).exists()]
    if missing:
        raise ConfigError(
            f"{manifest.service.name} [test].paths",
            f"{missing} not found in the service at {source.commit[:10]}; a service without "
            "tests cannot be delivered.",
            "add tests (pytest), or point [test].paths at them in delivery.toml.",
        )
    run_logger().info("Checked out %s at %s into %s", manifest.service.name, source.commit, dest)
    return Checkout(source=source, path=str(dest), manifest=manifest)


def _tool(argv: list[str]) -> list[str]:
    """Resolve the first word on PATH or next to this interpreter (a venv's bin)."""
    exe = shutil.which(argv[0]) or shutil.which(argv[0], path=str(Path(sys.executable).parent))
    if exe is None:
        raise ConfigError(
            "build.lint",
            f"the lint command {argv[0]!r} was not found.",
            "install it, or change [build].lint in delivery.toml.",
        )
    return [exe, *argv[1:]]


@task(name="lint", **INFRA_RETRIES)
def lint(co: Checkout) -> str:
    """Run the manifest's linter on the exported tree; findings stop the pipeline."""
    argv = _tool(co.manifest.build.lint)
    proc = subprocess.run(
        argv,
        cwd=co.path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RUFF_NO_CACHE": "true"},
    )
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise GateFailed("lint", f"`{' '.join(co.manifest.build.lint)}` found problems:\n{output}")
    run_logger().info("Lint passed: %s", output.splitlines()[-1] if output else "clean")
    return output


def find_package(tree: Path, declared: str | None) -> Path:
    if declared:
        for candidate in (tree / "src" / declared, tree / declared):
            if (candidate / "__init__.py").exists():
                return candidate
        raise ConfigError(
            "build.package",
            f"{declared!r} has no __init__.py under src/ or the top level.",
            "set [build].package to the service's import package.",
        )
    found = sorted(p.parent for p in (tree / "src").glob("*/__init__.py"))
    if len(found) == 1:
        return found[0]
    raise ConfigError(
        "build.package",
        f"cannot tell the service's package (under src/: {[p.name for p in found] or 'none'}).",
        "set [build].package in delivery.toml.",
    )


#: build backends the delivery tool itself carries: built without an isolated environment
#: (offline, fast); any other backend (hatchling, flit-core, poetry-core, setuptools-scm...) is
#: built in an isolated environment that uv makes from the index
LOCAL_BACKENDS = ("setuptools.build_meta", "setuptools.build_meta:__legacy__")
LOCAL_REQUIRES = re.compile(r"^(setuptools|wheel)\s*([<>=!~;\[]|$)")  # not setuptools-scm


def builds_locally(pyproject: Path) -> bool:
    system = tomllib.loads(pyproject.read_text()).get("build-system", {})
    backend = system.get("build-backend", "setuptools.build_meta:__legacy__")
    requires = system.get("requires", ["setuptools"])
    return backend in LOCAL_BACKENDS and all(LOCAL_REQUIRES.match(r.strip()) for r in requires)


def build_wheel(co: Checkout, out_dir: Path) -> tuple[Path, str]:
    """Build the wheel of the exported tree, stamped with its commit (tasks/stamp.py).
    Returns (wheel, version): the version is the wheel's metadata version, label removed."""
    build_dir = out_dir / "tree"
    shutil.rmtree(build_dir, ignore_errors=True)
    shutil.copytree(co.path, build_dir)
    pyproject = build_dir / "pyproject.toml"
    if not pyproject.exists():
        raise ConfigError(
            f"{co.manifest.service.name}",
            "has no pyproject.toml to build a wheel from.",
            "add one, or use [build].kind = 'image' with a Dockerfile.",
        )
    package = find_package(build_dir, co.manifest.build.package)
    stamp = stamp_version(build_dir, co.source.commit, co.source.repo, package)
    (package / "_release.json").write_text(
        json.dumps(
            {
                "service": co.manifest.service.name,
                "version": stamp.version,
                "commit": co.source.commit,
            }
        )
    )
    wheels = out_dir / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(commit_time(co.source)), **stamp.env}
    if builds_locally(pyproject):
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        argv += ["--no-index", "--quiet", "--wheel-dir", str(wheels), str(build_dir)]
    else:
        argv = [uv(), "build", "--wheel", "--quiet", "--out-dir", str(wheels), str(build_dir)]
        env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    built = sorted(wheels.glob("*.whl")) if wheels.exists() else []
    if proc.returncode != 0 or len(built) != 1:
        raise GateFailed(
            "build", f"wheel build failed:\n{quoted((proc.stdout + proc.stderr)[-2000:])}"
        )
    version = wheel_version(built[0])
    if not version.endswith(f"+g{co.source.commit}"):
        raise InfrastructureError(
            f"built {built[0].name} with version {version}, which does not carry the commit "
            f"(stamped through {stamp.how}; the build backend did not take it)"
        )
    return built[0], version.split("+", 1)[0]  # the wheel's own: a backend may normalise it


def make_bundle(co: Checkout, wheel: Path, version: str, store: ArtifactStore) -> Bundle:
    """The service's wheel and its locked dependencies as wheels in the store's pool."""
    locked = locked_set(Path(co.path), co.manifest, Path(store.root))
    pool = store.pool
    return Bundle(
        service=co.manifest.service.name,
        version=version,
        commit=co.source.commit,
        python=PYTHON,
        wheel=pool.add(wheel),
        runtime=fetch_wheels(locked.requirements, pool),
        test=fetch_wheels(locked.test_requirements, pool),
        requirements=locked.requirements,
        test_requirements=locked.test_requirements,
        lock_source=locked.source,
    )


@task(name="build", **INFRA_RETRIES)
def build(co: Checkout, store: ArtifactStore) -> Release:
    """One artifact per commit: reuse it if it was built before, else build and store it."""
    logger = run_logger()
    manifest = co.manifest
    if manifest.build.kind == "image":
        from prefect_delivery.tasks.build_image import build_image_release  # the container path

        return build_image_release(co, store)
    artifact = store.find(manifest.service.name, co.source.commit, "bundle")
    version = None
    if artifact is None:
        with tempfile.TemporaryDirectory(prefix="pd-build-") as tmp:
            wheel, version = build_wheel(co, Path(tmp))
            bundle = make_bundle(co, wheel, version, store)
            artifact = store.put_bundle(bundle)
        logger.info(
            "Built %s with %d locked dependencies (%s; lock: %s)",
            artifact.filename,
            len(bundle.runtime),
            artifact.digest,
            bundle.lock_source,
        )
    else:
        logger.info(
            "Commit already built once: reusing %s (%s)", artifact.filename, artifact.digest
        )
    if version is None:
        version = (artifact.filename or "").split("-")[1].split("+")[0]
    return Release(
        service=manifest.service.name,
        version=version,
        commit=co.source.commit,
        artifact=artifact,
        run=manifest.run_spec(),
        author=co.source.author,
    )
