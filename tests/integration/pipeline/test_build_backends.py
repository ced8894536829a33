"""Builds beyond setuptools with a static version: hatchling, flit-core, poetry-core,
setuptools-scm and hatch-vcs, each with the backend from the index (an isolated build by uv).
The release's version is the built wheel's own, and the commit is stamped into it."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from support import short_tmpdir

from prefect_delivery.tasks.stamp import wheel_version

MANIFEST = """\
[service]
name = "{name}"

[build]
lint = ["ruff", "check", "."]
package = "{package}"

[test]
paths = ["tests"]

[run]
command = ["python", "-m", "{package}", "{{port}}"]
"""

PROJECTS = {
    "hatchling": (
        """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "svc-hatch"
version = "1.4.0"
""",
        "1.4.0",
    ),
    "flit-core": (
        """[build-system]
requires = ["flit_core>=3.4,<4"]
build-backend = "flit_core.buildapi"

[project]
name = "svc-flit"
dynamic = ["version", "description"]
""",
        "0.7.0",
    ),
    "poetry-core": (
        """[build-system]
requires = ["poetry-core>=1.0"]
build-backend = "poetry.core.masonry.api"

[tool.poetry]
name = "svc-poetry"
version = "2.1.0"
description = "x"
authors = ["a <a@example.com>"]
packages = [{ include = "svc_poetry", from = "src" }]
""",
        "2.1.0",
    ),
    "setuptools-scm": (
        """[build-system]
requires = ["setuptools>=68", "setuptools-scm>=8"]
build-backend = "setuptools.build_meta"

[project]
name = "svc-scm"
dynamic = ["version"]

[tool.setuptools_scm]

[tool.setuptools.package-data]
"*" = ["*.json"]
""",
        "3.2.0",  # the tag
    ),
    "hatch-vcs": (
        """[build-system]
requires = ["hatchling", "hatch-vcs"]
build-backend = "hatchling.build"

[project]
name = "svc-vcs"
dynamic = ["version"]

[tool.hatch.version]
source = "vcs"
""",
        "3.2.0",
    ),
}


def project_tree(backend: str) -> tuple[Path, str]:
    pyproject, _ = PROJECTS[backend]
    name = pyproject.split('name = "', 1)[1].split('"', 1)[0]
    package = name.replace("-", "_")
    root = short_tmpdir("pd-bk-") / name
    src = root / "src" / package
    src.mkdir(parents=True)
    if backend == "flit-core":  # flit reads the version (and description) from the module
        (src / "__init__.py").write_text('"""A service."""\n\n__version__ = "0.7.0"\n')
    else:
        (src / "__init__.py").write_text('"""A service."""\n')
    (root / "tests").mkdir()
    (root / "tests" / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    (root / "pyproject.toml").write_text(pyproject)
    (root / "delivery.toml").write_text(MANIFEST.format(name=name, package=package))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    subprocess.run([*git, "tag", "v3.2.0"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "after the tag"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    return root, sha.strip()


@pytest.mark.slow
@pytest.mark.parametrize("backend", list(PROJECTS))
def test_each_backend_builds_a_release_that_carries_its_commit(backend, tmp_path):
    from prefect_delivery.blocks.artifacts import ArtifactStore, checked_wheel
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.source import resolve_source

    root, sha = project_tree(backend)
    co = checkout.fn(resolve_source(root, sha))
    release = build.fn(co, ArtifactStore(root=str(tmp_path / "artifacts")))
    expected = PROJECTS[backend][1]
    assert release.version == expected
    wheel = checked_wheel(release)
    assert wheel_version(wheel) == f"{expected}+g{sha}"
    with zipfile.ZipFile(wheel) as archive:
        stamp = next(n for n in archive.namelist() if n.endswith("_release.json"))
        assert json.loads(archive.read(stamp)) == {
            "service": co.manifest.service.name,
            "version": expected,
            "commit": sha,
        }
