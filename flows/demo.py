"""``delivery demo``: deliver hello-service twice, release 1 then release 2, on this machine.

The demo copies examples/hello-service into a git repository of its own under the state folder
and commits two releases, so the second delivery really replaces a live release. It creates the
blocks it needs, runs the delivery flow for each commit (auto-approved, recorded as such) and
leaves staging and production running.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello-service"
IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", "*.egg-info"
)
GIT_ID = ["-c", "user.name=prefect-delivery demo", "-c", "user.email=demo@localhost"]


class DemoRepo(BaseModel):
    path: str

    def git(self, *args: str) -> str:
        out = subprocess.run(
            ["git", *GIT_ID, "-C", self.path, *args], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def commit_all(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def prepare_repo(state_dir: Path, source: Path = EXAMPLE) -> DemoRepo:
    """A fresh git repository holding a copy of the sample service."""
    path = state_dir / "demo" / "hello-service"
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(source, path, ignore=IGNORED)
    repo = DemoRepo(path=str(path))
    repo.git("init", "-q", "-b", "main")
    return repo


def set_version(repo: DemoRepo, version: str, greeting: str | None = None) -> None:
    pyproject = Path(repo.path) / "pyproject.toml"
    text = re.sub(
        r'^version = "[^"]+"', f'version = "{version}"', pyproject.read_text(), count=1, flags=re.M
    )
    pyproject.write_text(text)
    if greeting:
        settings = Path(repo.path) / "src" / "hello_service" / "settings.toml"
        settings.write_text(
            re.sub(
                r'^greeting = ".*"$', f'greeting = "{greeting}"', settings.read_text(), flags=re.M
            )
        )


def set_fault(repo: DemoRepo, fault: str) -> None:
    """Bake a fault into the next commit (crash, unhealthy, error:<share>, slow:<s>)."""
    settings = Path(repo.path) / "src" / "hello_service" / "settings.toml"
    settings.write_text(
        re.sub(r'^fault = ".*"$', f'fault = "{fault}"', settings.read_text(), flags=re.M)
    )


def set_build_kind(repo: DemoRepo, kind: str) -> None:
    """Build the next commit as a wheel (process target) or an image (docker target)."""
    manifest = Path(repo.path) / "delivery.toml"
    manifest.write_text(
        re.sub(r'^kind = "[a-z]+"', f'kind = "{kind}"', manifest.read_text(), count=1, flags=re.M)
    )
