"""One virtualenv per release digest, made offline from the release's bundle, hashes required.

The interpreter is the build's Python version (``Bundle.python``) found on this host, never the
delivery tool's environment: the virtualenv has no system site-packages and instances get no
PYTHONPATH, so what an instance imports is what its bundle carries, and two releases that need
different versions of one library run side by side. uv makes it (tens of milliseconds for a
small set); pip is the fallback and the benchmark's comparison (bench/artifact.py).

A virtualenv records its own path, so it is made where it stays; a lock keeps two instances of
one release from making it at once, and ``.complete`` is written last: a half-made one (a crash
in between) is removed and made again.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from prefect_delivery.blocks.bundle import Bundle
from prefect_delivery.blocks.errors import ConfigError, InfrastructureError, quoted

Installer = Literal["uv", "pip"]
COMPLETE = ".complete"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_venv(folder: Path) -> bool:
    return (folder / "pyvenv.cfg").is_file() and venv_python(folder).exists()


def interpreter(version: str) -> str:
    """This host's interpreter for a build's Python version ('3.11')."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    found = shutil.which(f"python{version}")
    if found is None:
        raise ConfigError(
            "release bundle",
            f"was built for Python {version}, which this host does not have "
            f"(python{version} is not on PATH).",
            f"install Python {version} on the target host, or build with the Python it has.",
        )
    return found


@contextmanager
def _held(lock: Path):
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(argv: list[str], what: str) -> None:
    # the machine's pip configuration (extra indexes, find-links) must not add candidates
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired:
        raise InfrastructureError(f"{what} took longer than 300 s") from None
    if proc.returncode != 0:
        tail = quoted("\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:]))
        raise InfrastructureError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def uv() -> str:
    """The uv binary (the `uv` wheel from PyPI, beside this interpreter)."""
    from uv import find_uv_bin

    return find_uv_bin()


def in_venv(argv: list[str], venv: Path) -> list[str]:
    """``argv`` with a leading ``python`` (or a console script the virtualenv has, such as
    gunicorn) taken from ``venv``."""
    bin_dir = venv_python(venv).parent
    if argv and argv[0] in ("python", "python3"):
        return [str(bin_dir / "python"), *argv[1:]]
    if argv and "/" not in argv[0] and (bin_dir / argv[0]).exists():
        return [str(bin_dir / argv[0]), *argv[1:]]
    return list(argv)


def prepare_venv(
    bundle: Bundle,
    wheels: Path,
    dest: Path,
    with_tests: bool = False,
    installer: Installer = "uv",
) -> Path:
    """The virtualenv at ``dest`` with the bundle installed (made once; ``wheels`` is the
    bundle's checked wheel folder)."""
    if (dest / COMPLETE).exists():
        return dest
    with _held(dest.with_name(dest.name + ".lock")):
        if (dest / COMPLETE).exists():
            return dest
        shutil.rmtree(dest, ignore_errors=True)
        base = interpreter(bundle.python)
        with tempfile.TemporaryDirectory(prefix="pd-venv-") as tmp:
            req = Path(tmp) / "requirements.txt"
            req.write_text(bundle.install_requirements(with_tests))
            python = str(venv_python(dest))
            what = f"preparing {bundle.service} {bundle.version} ({installer})"
            if installer == "uv":
                make = [uv(), "venv", "--quiet", "--python", base, "--no-python-downloads"]
                _run([*make, str(dest)], what)
                install = [uv(), "pip", "install", "--quiet", "--python", python, "--offline"]
            else:
                _run([base, "-m", "venv", "--without-pip", str(dest)], what)
                install = [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
                install += ["--disable-pip-version-check"]
            install += ["--no-index", "--find-links", str(wheels), "--no-deps"]
            if req.read_text().strip():
                _run([*install, "--require-hashes", "-r", str(req)], what)
            # the service's own wheel: its sha256 was checked with the bundle's (a path
            # requirement carries no hash line)
            _run([*install, str(wheels / bundle.wheel.file)], what)
        (dest / COMPLETE).write_text(bundle.digest)
    return dest
