"""What this build is: version and commit, baked into the package by the pipeline's build stage.

``_release.json`` is written into the package at build time. A source checkout without it
reports version "0.0.0+dev" and commit "unknown".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class ReleaseInfo:
    version: str
    commit: str


def load_release() -> ReleaseInfo:
    try:
        data = json.loads(resources.files("hello_service").joinpath("_release.json").read_text())
    except (FileNotFoundError, ValueError):
        return ReleaseInfo(version="0.0.0+dev", commit="unknown")
    return ReleaseInfo(version=str(data.get("version", "")), commit=str(data.get("commit", "")))
