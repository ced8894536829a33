"""Wheel helpers: digest a file, unpack a pure-Python wheel where PYTHONPATH can find it."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
import zipfile
from pathlib import Path


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


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
