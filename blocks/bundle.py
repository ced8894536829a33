"""A bundle: everything a Python release runs, as wheels pinned by sha256.

The build resolves the service's dependencies once (tasks/lock.py) and keeps every wheel it
needs beside the service's own wheel. ``bundle.json`` lists them all, each with its sha256, the
locked requirements they were chosen from and the interpreter version the build resolved for;
the release's digest is the sha256 of ``bundle.json``, so it covers every byte that runs.

Wheels live once in the store's content-addressed pool (``<root>/wheels/<sha256>/<file>``): a
commit whose dependencies did not change adds only its own wheel. Each bundle's folder links the
wheels it names (``<root>/<service>/<digest>/wheels/``), which is the one folder an installer
is pointed at, offline, with hashes required (blocks/targets/venv.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

#: the bundle's own description, whose sha256 is the release's digest
BUNDLE_FILE = "bundle.json"


class PinnedWheel(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: str
    sha256: str  # hex, no prefix


class Bundle(BaseModel):
    """The artifact of a Python release: its wheel and every dependency, locked."""

    model_config = ConfigDict(frozen=True)

    service: str
    version: str = Field(description="the built wheel's metadata version (without +g<sha>)")
    commit: str
    python: str = Field(description="'3.11': the interpreter version the lock was resolved for")
    wheel: PinnedWheel = Field(description="the service's own wheel")
    runtime: list[PinnedWheel] = Field(description="what instances install beside it")
    test: list[PinnedWheel] = Field(
        default_factory=list, description="what the test stage adds (pytest and the like)"
    )
    requirements: str = Field(description="the locked runtime requirements, with hashes")
    test_requirements: str = ""
    lock_source: str = Field(description="uv.lock, a requirements file, or 'resolved at build'")

    def canonical(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=1).encode()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical()).hexdigest()

    def files(self, with_tests: bool = False) -> list[PinnedWheel]:
        return [self.wheel, *self.runtime, *(self.test if with_tests else [])]

    def install_requirements(self, with_tests: bool = False) -> str:
        """What an installer is given: each dependency wheel of the bundle, pinned to that
        file's sha256 (not the lock's hashes: a wheel built from an sdist has its own)."""
        from packaging.utils import parse_wheel_filename

        lines = []
        for wheel in [*self.runtime, *(self.test if with_tests else [])]:
            name, version, _, _ = parse_wheel_filename(wheel.file)
            lines.append(f"{name}=={version} --hash=sha256:{wheel.sha256}")
        return "\n".join(lines) + ("\n" if lines else "")


def sha256_hex(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class WheelPool:
    """The store's wheels, each kept once under its sha256."""

    def __init__(self, root: Path):
        self.root = Path(root) / "wheels"

    def path(self, wheel: PinnedWheel) -> Path:
        return self.root / wheel.sha256 / wheel.file

    def has(self, wheel: PinnedWheel) -> bool:
        return self.path(wheel).is_file()

    def find(self, sha256: str) -> Path | None:
        """The pooled file with this sha256 (hex), if any."""
        folder = self.root / sha256
        files = sorted(folder.glob("*.whl")) if folder.is_dir() else []
        return files[0] if files else None

    def add(self, file: Path) -> PinnedWheel:
        """Keep a wheel file (copied in atomically); returns it pinned by its sha256."""
        pinned = PinnedWheel(file=file.name, sha256=sha256_hex(file))
        dest = self.path(pinned)
        if dest == file:
            return pinned
        if not dest.is_file() or sha256_hex(dest) != pinned.sha256:  # absent, or tampered with
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
            shutil.copyfile(file, tmp)
            os.replace(tmp, dest)
        return pinned

    def link_into(self, wheels: list[PinnedWheel], folder: Path) -> None:
        """Give ``folder`` the named wheels (hard links, copies across file systems)."""
        folder.mkdir(parents=True, exist_ok=True)
        for wheel in wheels:
            dest = folder / wheel.file
            if dest.exists():
                continue
            try:
                os.link(self.path(wheel), dest)
            except OSError:
                shutil.copyfile(self.path(wheel), dest)


def problems(bundle: Bundle, folder: Path, with_tests: bool = False) -> list[str]:
    """What in ``folder`` is not the bytes the bundle names (missing or another sha256)."""
    found = []
    for wheel in bundle.files(with_tests):
        path = folder / wheel.file
        if not path.is_file():
            found.append(f"{wheel.file} is missing")
        elif sha256_hex(path) != wheel.sha256:
            found.append(f"{wheel.file} is not the file that was built (sha256 differs)")
    return found
