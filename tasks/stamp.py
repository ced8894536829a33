"""Stamp the commit into the version a service's build backend gives its wheel.

Every release's wheel carries the full commit as a local version label (``1.2.0+g<sha>``), so
what runs can always be traced to its commit. Where the version comes from depends on the
project; each convention is stamped where its backend reads it, in the build's copy of the tree:

- a static ``[project].version`` (setuptools, hatchling, flit-core, pdm-backend...): rewritten;
- a static ``[tool.poetry].version`` (poetry-core without a ``[project]`` version): rewritten;
- a version from version control (setuptools-scm, hatch-vcs): the tree is an export without
  ``.git``, so the backend is told the version (``SETUPTOOLS_SCM_PRETEND_VERSION``): the newest
  tag reachable from the commit (``v`` stripped; ``0.0.0`` when there is none), plus the label;
- a ``__version__ = "..."`` in a module (flit-core's dynamic version, hatchling's
  ``[tool.hatch.version].path``, setuptools' ``attr:``): that line is rewritten.

The version a release shows is then the built wheel's own metadata version, label removed.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from pydantic import BaseModel

from prefect_delivery.blocks.errors import ConfigError

VERSION_LINE = re.compile(r"""^(__version__\s*=\s*)(["'])([^"']+)\2""", re.M)


class Stamp(BaseModel):
    version: str  # the version without its label, as the project declares it
    how: str  # which convention was stamped
    env: dict[str, str] = {}  # what the build backend must be told


def _rewrite_static(path: Path, section: str, version: str, commit: str) -> None:
    """Rewrite ``version = "X"`` inside ``[section]`` of a pyproject."""
    text = path.read_text()
    header = re.search(rf"^\[{re.escape(section)}\]\s*$", text, re.M)
    if header is None:
        raise ConfigError(f"{path.name} [{section}]", "could not find the section.", None)
    end = re.search(r"^\[", text[header.end() :], re.M)
    body = text[header.end() : header.end() + (end.start() if end else len(text))]
    pattern = re.compile(r'^(\s*version\s*=\s*)(["\'])' + re.escape(version) + r"\2", re.M)
    new_body, count = pattern.subn(lambda m: f'{m.group(1)}"{version}+g{commit}"', body, 1)
    if count != 1:
        raise ConfigError(
            f"{path.name} [{section}].version", "could not find the version line to stamp.", None
        )
    path.write_text(text[: header.end()] + new_body + text[header.end() + len(body) :])


def _local_label_free(version: object, where: str) -> str:
    if not isinstance(version, str) or "+" in version:
        raise ConfigError(
            where,
            f"must be a version without a local label (got {version!r}).",
            'declare e.g. version = "1.2.0"; the pipeline appends +g<commit>.',
        )
    return version


def last_tag(repo: str, commit: str) -> str:
    """The newest tag reachable from the commit, as a version ('0.0.0' when there is none)."""
    proc = subprocess.run(
        ["git", "-C", repo, "describe", "--tags", "--abbrev=0", commit],
        capture_output=True,
        text=True,
        timeout=60,
    )
    tag = proc.stdout.strip() if proc.returncode == 0 else ""
    return tag[1:] if tag[:1] in ("v", "V") else (tag or "0.0.0")


def _version_module(tree: Path, data: dict, package: Path | None) -> Path | None:
    """The module whose ``__version__`` the backend reads, when the project says one."""
    tool = data.get("tool", {})
    declared = (tool.get("hatch", {}).get("version", {}) or {}).get("path")
    if declared:
        return tree / declared
    attr = (tool.get("setuptools", {}).get("dynamic", {}).get("version") or {}).get("attr")
    if attr:
        module = attr.rsplit(".", 1)[0].replace(".", "/")
        for base in (tree / "src", tree):
            for candidate in (base / f"{module}.py", base / module / "__init__.py"):
                if candidate.is_file():
                    return candidate
    if package is not None and (package / "__init__.py").is_file():  # flit-core's convention
        return package / "__init__.py"
    return None


def stamp_version(tree: Path, commit: str, repo: str, package: Path | None) -> Stamp:
    """Stamp ``+g<commit>`` into the build copy ``tree`` (see the module doc)."""
    pyproject = tree / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text())
    project = data.get("project", {})
    tool = data.get("tool", {})
    requires = " ".join(data.get("build-system", {}).get("requires", [])).lower()
    if "version" in project:
        version = _local_label_free(project["version"], f"{pyproject.name} [project].version")
        _rewrite_static(pyproject, "project", version, commit)
        return Stamp(version=version, how="[project].version")
    if "version" not in project.get("dynamic", []) and "version" in tool.get("poetry", {}):
        version = _local_label_free(
            tool["poetry"]["version"], f"{pyproject.name} [tool.poetry].version"
        )
        _rewrite_static(pyproject, "tool.poetry", version, commit)
        return Stamp(version=version, how="[tool.poetry].version")
    vcs = (
        "setuptools_scm" in tool
        or (tool.get("hatch", {}).get("version", {}) or {}).get("source") == "vcs"
        or re.search(r"setuptools[-_]scm|hatch-vcs", requires) is not None
    )
    if vcs:
        version = last_tag(repo, commit)
        return Stamp(
            version=version,
            how="version control (setuptools-scm)",
            env={"SETUPTOOLS_SCM_PRETEND_VERSION": f"{version}+g{commit}"},
        )
    module = _version_module(tree, data, package)
    if module is not None and module.is_file():
        text = module.read_text()
        match = VERSION_LINE.search(text)
        if match:
            version = _local_label_free(match.group(3), f"{module.name} __version__")
            module.write_text(
                text[: match.start()]
                + f'{match.group(1)}"{version}+g{commit}"'
                + text[match.end() :]
            )
            return Stamp(version=version, how=f"__version__ in {module.relative_to(tree)}")
    raise ConfigError(
        f"{pyproject.name} version",
        "the pipeline cannot tell where this project's version comes from.",
        'declare [project].version = "1.2.0", use setuptools-scm or hatch-vcs, or keep '
        '__version__ = "1.2.0" in the package (flit-core, [tool.hatch.version].path).',
    )


def wheel_version(wheel: Path) -> str:
    """The version in a built wheel's metadata."""
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        for line in archive.read(name).decode().splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    raise ValueError(f"{wheel.name} has no Version in its metadata")
