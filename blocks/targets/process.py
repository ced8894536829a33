"""ProcessTarget: instances of a release as local processes on leased loopback ports.

The release's bundle is checked against its digest and installed once per digest into its own
virtualenv in the state folder (blocks/targets/venv.py: offline, hashes required, the build's
Python version, nothing of the delivery tool's environment); each instance runs the manifest's
command from that virtualenv (a leading ``python`` is its interpreter, any other first word is
looked up in its ``bin/`` first), in its own session so it outlives the flow run that started
it. A release built before bundles (a bare wheel) is unpacked and run on the tool's interpreter
with the wheel on PYTHONPATH, so it can still be rolled back to. Each instance leaves a small
JSON record beside it (its labels: service, environment, release, slot, pid and the pid's start
time); ``list`` joins those records with /proc, so a pid that was reused by another program is
not mistaken for ours. Its port is leased on the host until the launch confirms the instance
itself listens there (blocks/ports.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from prefect_delivery.blocks.artifacts import checked_bundle, checked_wheel, unpack_wheel
from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.paths import (
    atomic_write_json,
    default_state_dir,
    process_start_ticks,
    service_env,
)
from prefect_delivery.blocks.ports import end_lease, lease_port
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.blocks.schema_cache import SchemaOnce
from prefect_delivery.blocks.targets.process_records import PENDING, ProcessRecords
from prefect_delivery.blocks.targets.venv import Installer, in_venv, prepare_venv


class ProcessTarget(SchemaOnce, Block):
    """Runs instances of a release as local processes on free loopback ports."""

    _block_type_name = "Process Target"
    _block_type_slug = "process-target"
    _description = (
        "Runs each instance of a release (a wheel pinned by sha256) as a local process on a "
        "free loopback port; the embedded default target."
    )

    state_dir: str = Field(
        default_factory=default_state_dir,
        description="Folder for unpacked releases, instance records and logs.",
    )
    python: str = Field(
        default="",
        description="Interpreter for 'python' in the start command of a release built before "
        "bundles (a bare wheel); empty means the one running the flow. A bundle runs in its "
        "own virtualenv, on the Python version it was built for.",
    )
    installer: Installer = Field(
        default="uv", description="What installs a bundle into its virtualenv: uv, or pip."
    )
    host: str = Field(default="127.0.0.1", description="Loopback address instances bind to.")

    # ----------------------------------------------------------------- folders
    @property
    def releases_dir(self) -> Path:
        return Path(self.state_dir) / "releases"

    def instances_dir(self, environment: str) -> Path:
        return Path(self.state_dir) / "instances" / environment

    def release_dir(self, release: Release) -> Path:
        return self.releases_dir / release.digest.split(":", 1)[-1]

    def venv_dir(self, release: Release) -> Path:
        return self.release_dir(release) / "venv"

    # ----------------------------------------------------------------- Target
    def prepare(self, release: Release) -> None:
        kind = release.artifact.kind
        if kind == "bundle":
            if (self.venv_dir(release) / ".complete").exists():
                return
            bundle, wheels = checked_bundle(release)
            prepare_venv(bundle, wheels, self.venv_dir(release), installer=self.installer)
            return
        if kind != "wheel":
            raise ConfigError(
                "environment target",
                f"ProcessTarget runs bundles and wheels, but release {release.label} is a {kind}.",
                "use a DockerTarget for image releases, or build the service as a wheel.",
            )
        dest = self.release_dir(release)
        if (dest / ".complete").exists():
            return
        unpack_wheel(checked_wheel(release), dest)

    def _argv(self, release: Release, port: int) -> list[str]:
        argv = [part.format(host=self.host, port=port) for part in release.run.command]
        if not argv:
            return argv
        if release.artifact.kind == "bundle":
            return in_venv(argv, self.venv_dir(release))
        if argv[0] in ("python", "python3"):
            argv[0] = self.python or sys.executable
        return argv

    def _release_env(self, release: Release) -> dict[str, str]:
        if release.artifact.kind != "bundle":
            return {"PYTHONPATH": str(self.release_dir(release))}
        venv = self.venv_dir(release)
        tool_bin = str(Path(sys.executable).parent)  # the delivery tool's console scripts
        path = [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p != tool_bin]
        return {"VIRTUAL_ENV": str(venv), "PATH": os.pathsep.join([str(venv / "bin"), *path])}

    def start(
        self, release: Release, environment: str, slot: str, env: dict[str, str] | None = None
    ) -> Instance:
        self.prepare(release)
        folder = self.instances_dir(environment)
        folder.mkdir(parents=True, exist_ok=True)
        instance = Instance.new(environment, release, slot, self.host, 0, PENDING)
        # the port is ours until confirm() or stop() (blocks/ports.py)
        instance.port = lease_port(self.host, instance.id).port
        instance_id = instance.id
        child_env = service_env()
        child_env.update(self._release_env(release))
        child_env.update(instance.variables())
        child_env.update(env or {})
        # The record comes first: a flow run killed right after the fork still leaves a trace
        # that the next run's reconciliation finds (the child is found by its environment).
        record = folder / f"{instance_id}.json"
        atomic_write_json(record, instance.model_dump(mode="json"))
        # The instance's own output: what the service prints is its own (a careless one may
        # print its secrets), so only the owner may read it, and nothing copies it verbatim.
        log_path = folder / f"{instance_id}.log"
        try:
            with open(
                os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
            ) as log:
                proc = subprocess.Popen(
                    self._argv(release, instance.port),
                    cwd=folder,
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except BaseException:
            end_lease(instance_id)
            raise
        instance.handle = f"{proc.pid}:{process_start_ticks(proc.pid)}"
        atomic_write_json(record, instance.model_dump(mode="json"))
        return instance

    def confirm(self, instance: Instance) -> None:
        self.records().confirm(instance)

    def records(self) -> ProcessRecords:
        """The instance records and processes of this target (pure: no Prefect needed)."""
        return ProcessRecords(self.state_dir)

    def list(self, environment: str) -> list[Instance]:
        return self.records().list(environment)

    def stop(self, instance: Instance, timeout_s: float = 10.0) -> None:
        try:
            self.records().stop(instance, timeout_s)
        finally:
            end_lease(instance.id)

    def logs(self, instance: Instance, lines: int = 20) -> str:
        return self.records().logs(instance, lines)
