"""The service's dependencies, locked once at build: what its bundle carries.

Where the versions come from, first match wins:

1. ``[build].requirements`` in delivery.toml: a requirements file with ``--hash`` on every line
   (pip-compile's or ``uv pip compile --generate-hashes``' output), taken as it is;
2. ``uv.lock`` in the service's tree: exported with ``uv export --frozen`` (never re-resolved);
3. neither: ``[project].dependencies`` resolved once with ``uv pip compile --generate-hashes``
   for the build's interpreter version; the result is kept in the bundle (and shown in the
   report), and reused by every later commit that declares the same dependencies.

The test stage's set is the runtime set plus ``[project.optional-dependencies].test`` (or the
``test`` dependency group of a uv.lock) and ``[test].requires`` (pytest by default), resolved
with the runtime versions as constraints, so the tests run against exactly what instances run.

The wheels themselves come from ``pip wheel --require-hashes`` (a wheel from the index, or one
built from an sdist), are checked against the lock's hashes by pip, and kept once in the store's
pool (blocks/bundle.py); a lock whose wheels are all in the pool downloads nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from pydantic import BaseModel

from prefect_delivery.blocks.bundle import PinnedWheel, WheelPool, sha256_hex
from prefect_delivery.blocks.errors import (
    ConfigError,
    DeliveryError,
    GateFailed,
    InfrastructureError,
    quoted,
)
from prefect_delivery.blocks.paths import atomic_write_json
from prefect_delivery.blocks.targets.venv import uv

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
REQUIREMENT_START = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


class LockedSet(BaseModel):
    requirements: str  # runtime, with hashes
    test_requirements: str  # what the tests add, with hashes (runtime versions held)
    source: str


def _run(argv: list[str], what: str, cwd: Path | None = None, stdin: str | None = None) -> str:
    env = {**os.environ, "UV_NO_PROGRESS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        proc = subprocess.run(
            argv, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=600, env=env
        )
    except subprocess.TimeoutExpired:
        raise InfrastructureError(f"{what} took longer than 600 s") from None
    if proc.returncode != 0:
        output = quoted("\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:]))
        if "No solution found" in output or "conflict" in output.lower():
            raise GateFailed("build", f"{what}: the dependencies cannot be resolved:\n{output}")
        raise InfrastructureError(f"{what} failed (exit {proc.returncode}):\n{output}")
    return proc.stdout


def _name(requirement: str) -> str:
    """The normalised project name a requirement line starts with ('' for none)."""
    match = REQUIREMENT_START.match(requirement.strip())
    return re.sub(r"[-_.]+", "-", match.group(0)).lower() if match else ""


def requirement_names(text: str) -> set[str]:
    """Normalised project names of a requirements text (hash and comment lines skipped)."""
    return {name for name in map(_name, text.splitlines()) if name}


def unhashed(text: str) -> list[str]:
    """Requirement lines of a requirements text that carry no ``--hash``."""
    joined = re.sub(r"\\\n", " ", text)
    return [
        line.split()[0]
        for line in (raw.split("#", 1)[0].strip() for raw in joined.splitlines())
        if line and not line.startswith("-") and "--hash=" not in line
    ]


def pins(text: str) -> str:
    """``name==version`` lines of a locked text (constraints for a second resolution)."""
    return "\n".join(
        line.split()[0].rstrip("\\")
        for line in (raw.strip() for raw in text.splitlines())
        if REQUIREMENT_START.match(line)
    )


def _cache(root: Path, kind: str, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return root / "locks" / f"{kind}-{digest}.json"


def compile_requirements(inputs: list[str], constraints: str, python: str) -> str:
    """Resolve with hashes against the index; when the index does not answer, from what uv's
    cache already knows (a build whose dependencies were resolved before survives an outage)."""
    with tempfile.TemporaryDirectory(prefix="pd-lock-") as tmp:
        argv = [uv(), "pip", "compile", "-", "--generate-hashes", "--no-header", "--quiet"]
        argv += ["--python-version", python, "--no-annotate"]
        if constraints:
            (Path(tmp) / "c.txt").write_text(constraints + "\n")
            argv += ["--constraint", str(Path(tmp) / "c.txt")]
        what, stdin = "resolving the dependencies (uv pip compile)", "\n".join(inputs)
        try:
            return _run(argv, what, stdin=stdin)
        except InfrastructureError as online:
            try:
                return _run([*argv, "--offline"], what + " from uv's cache", stdin=stdin)
            except DeliveryError:
                raise online from None


def _declared(tree: Path) -> tuple[list[str], list[str]]:
    project = tomllib.loads((tree / "pyproject.toml").read_text()).get("project", {})
    deps = list(project.get("dependencies") or [])
    tests = list((project.get("optional-dependencies") or {}).get("test") or [])
    return deps, tests


def locked_set(tree: Path, manifest, store_root: Path, python: str = PYTHON) -> LockedSet:
    """The runtime and test requirements of the service at this tree (see the module doc)."""
    extra_tests = list(manifest.test.requires)
    declared = manifest.build.requirements
    if declared:
        path = tree / declared
        where = f"{manifest.service.name} delivery.toml [build].requirements"
        if not path.is_file():
            raise ConfigError(where, f"{declared!r} is not in the service's tree.", None)
        runtime = path.read_text()
        if missing := unhashed(runtime):
            raise ConfigError(
                where,
                f"{declared} has requirements without --hash ({', '.join(missing[:5])}); "
                "an artifact must pin every byte it installs.",
                f"regenerate it: uv pip compile --generate-hashes -o {declared} pyproject.toml",
            )
        source = f"requirements file {declared}"
        _, tests = _declared(tree)
    elif (tree / "uv.lock").is_file():
        # the lock is the service's: both sets are exported from it as they are (markers kept,
        # evaluated when the wheels are fetched), never resolved again
        export = [uv(), "export", "--frozen", "--no-emit-project", "--no-header", "--quiet"]
        runtime = _run([*export, "--no-dev"], "uv export (uv.lock)", cwd=tree)
        with_tests = _run([*export, "--all-extras", "--all-groups"], "uv export", cwd=tree)
        locked_tests = _without(with_tests, requirement_names(runtime))
        missing = [r for r in extra_tests if _name(r) not in requirement_names(with_tests)]
        if missing:  # what [test].requires adds beyond the lock, with the lock's versions held
            resolved = compile_requirements(missing, pins(with_tests), python)
            locked_tests += _without(resolved, requirement_names(with_tests))
        return LockedSet(requirements=runtime, test_requirements=locked_tests, source="uv.lock")
    else:
        deps, tests = _declared(tree)
        key = {"deps": deps, "python": python}
        cache = _cache(store_root, "runtime", key)
        try:
            runtime = json.loads(cache.read_text())["requirements"]
        except (OSError, ValueError, KeyError):
            runtime = compile_requirements(deps, "", python) if deps else ""
            atomic_write_json(cache, {"inputs": key, "requirements": runtime})
        source = "resolved at build ([project].dependencies)"
    test_inputs = sorted(set(tests + extra_tests))
    key = {"tests": test_inputs, "runtime": runtime, "python": python}
    cache = _cache(store_root, "test", key)
    try:
        test_requirements = json.loads(cache.read_text())["requirements"]
    except (OSError, ValueError, KeyError):
        resolved = compile_requirements(test_inputs, pins(runtime), python) if test_inputs else ""
        test_requirements = _without(resolved, requirement_names(runtime))
        atomic_write_json(cache, {"inputs": key, "requirements": test_requirements})
    return LockedSet(requirements=runtime, test_requirements=test_requirements, source=source)


def _without(text: str, names: set[str]) -> str:
    """The requirement blocks of ``text`` (a line and its continuation lines) not in ``names``."""
    kept, keep = [], True
    for line in text.splitlines():
        if REQUIREMENT_START.match(line):
            keep = _name(line) not in names
        if keep:
            kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")


def locked_blocks(text: str) -> list[tuple[str, set[str]]]:
    """(requirement, its allowed sha256 hexes) per requirement of a locked text that applies
    to this interpreter (a line whose environment marker is false is left out)."""
    from packaging.markers import Marker

    blocks = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.split(" #", 1)[0].strip()
        if not REQUIREMENT_START.match(line):
            continue
        requirement = line.split("--hash=", 1)[0].strip()
        if ";" in requirement and not Marker(requirement.split(";", 1)[1]).evaluate():
            continue
        blocks.append((requirement, set(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))))
    return blocks


@functools.cache
def _interpreter_tags() -> frozenset:
    from packaging.tags import sys_tags

    return frozenset(sys_tags())


def _compatible(file: str) -> bool:
    """Does this wheel install on this interpreter and platform?"""
    from packaging.utils import parse_wheel_filename

    return bool(parse_wheel_filename(file)[3] & _interpreter_tags())


def machine_cache() -> WheelPool:
    """Wheels this machine fetched before, for any store (``DELIVERY_WHEEL_CACHE``)."""
    default = Path.home() / ".cache" / "prefect-delivery"
    return WheelPool(Path(os.environ.get("DELIVERY_WHEEL_CACHE") or default))


def fetch_wheels(requirements: str, pool: WheelPool) -> list[PinnedWheel]:
    """The wheels of a locked set, in the store's pool. A wheel whose sha256 the lock allows
    is taken from the pool or the machine's cache when one is there (and fits this
    interpreter); the rest are fetched with pip, hashes required, and kept in both."""
    blocks = locked_blocks(requirements)
    cache, found, missing = machine_cache(), [], []
    for requirement, hashes in blocks:
        hit = next(
            (
                path
                for sha in sorted(hashes)
                for path in (pool.find(sha), cache.find(sha))
                # a cached file is used only when its bytes still have the hash it is kept as
                if path is not None and _compatible(path.name) and sha256_hex(path) == sha
            ),
            None,
        )
        if hit is None:
            missing.append(requirement)
        else:
            found.append(pool.add(hit))
    if not missing:
        return found
    with tempfile.TemporaryDirectory(prefix="pd-wheels-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(requirements)
        out = Path(tmp) / "wheels"
        argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--require-hashes"]
        _run([*argv, "--wheel-dir", str(out), "-r", str(req)], "fetching the locked wheels")
        wheels = []
        for path in sorted(out.glob("*.whl")):
            cache.add(path)
            wheels.append(pool.add(path))
    return wheels
