"""Where a project's env.py runs: in this interpreter, or in the release's own.

- :class:`InProcess` (default): env.py and the revisions are imported here, so the project's
  models must be importable by the interpreter that runs the lab.
- :class:`ReleaseInterpreter` (setting ``python`` / ``--python PATH``): one subprocess of the
  release's interpreter (its virtualenv, e.g. the environment its artifact installs) runs
  :mod:`migrations_lab.envrun` as a script and answers the lab over stdin/stdout, so env.py
  imports the release's own packages at the release's own versions. That interpreter needs
  what env.py needs anyway (Alembic, SQLAlchemy, a PostgreSQL driver); it needs nothing of
  the lab's. Seeding, snapshots and comparisons stay in the lab's interpreter: they only
  talk to the database.

Both answer the same three requests: ``scripts()``, ``render(rev, down)`` and
``run(direction, target, url)``; failures are :class:`envrun.StepFailed` with plain data.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from prefect_delivery.migrations_lab import envrun
from prefect_delivery.migrations_lab.envrun import StepFailed
from prefect_delivery.migrations_lab.errors import LabConfigError

_SCRIPT = Path(envrun.__file__).resolve()


class InProcess:
    def __init__(self, setup: dict[str, Any]):
        self.runner = envrun.EnvRunner(**setup)
        self.label = None

    def scripts(self) -> dict[str, Any]:
        try:
            return self.runner.scripts()
        except Exception as exc:  # the revisions could not be imported
            raise StepFailed(envrun.describe(exc, self.runner.env_py, set())) from None

    def render(self, revision: str, down_revision: str | None) -> str:
        return self.runner.render(revision, down_revision)

    def run(self, direction: str, target: str, url: str,
            timeouts: dict[str, int] | None = None, ephemeral: bool = False) -> dict[str, Any]:
        # a real database's URL never enters this process's environment (other threads)
        return self.runner.run(direction, target, url, timeouts, expose_url=ephemeral)

    def close(self) -> None:
        return None


class ReleaseInterpreter:
    """A worker process of the release's interpreter, started on first use."""

    def __init__(self, python: str, setup: dict[str, Any], cwd: Path):
        self.python = python
        self.label = python
        self.setup = setup
        self.cwd = cwd
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        try:
            proc = subprocess.Popen(
                [self.python, "-u", str(_SCRIPT), json.dumps(self.setup)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, cwd=self.cwd, env=env,
            )
        except OSError as exc:
            raise LabConfigError(f"python {self.python}", f"cannot be started ({exc.strerror}).",
                                 "name the release's virtualenv or its bin/python") from None
        assert proc.stderr is not None
        threading.Thread(target=self._drain, args=(proc,), daemon=True).start()
        first = self._read(proc)
        if "fatal" in first:
            self._stop(proc)
            raise LabConfigError(f"python {self.python}", first["fatal"] + ".",
                                 "pip install the release (with its requirements) into it")
        return proc

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self._stderr.append(line.rstrip())
            del self._stderr[:-40]

    def _read(self, proc: subprocess.Popen[str]) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=10)
            tail = " | ".join(self._stderr[-5:]) or "no output"
            raise LabConfigError(
                f"python {self.python}",
                f"the lab's worker exited ({proc.returncode}) before answering: {tail}.",
                "check that it is a Python 3.8+ interpreter with Alembic and SQLAlchemy",
            )
        return dict(json.loads(line))

    def _call(self, op: str, **args: Any) -> Any:
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            assert self._proc.stdin is not None
            self._proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
            self._proc.stdin.flush()
            answer = self._read(self._proc)
        if not answer["ok"]:
            raise StepFailed(answer["error"])
        return answer["result"]

    def scripts(self) -> dict[str, Any]:
        return dict(self._call("scripts"))

    def render(self, revision: str, down_revision: str | None) -> str:
        return str(self._call("render", revision=revision, down_revision=down_revision))

    def run(self, direction: str, target: str, url: str,
            timeouts: dict[str, int] | None = None, ephemeral: bool = False) -> dict[str, Any]:
        # the worker's environment is its own: the variables are always set there
        return dict(self._call("run", direction=direction, target=target, url=url,
                               timeouts=timeouts))

    def _stop(self, proc: subprocess.Popen[str]) -> None:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        if self._proc is not None:
            self._stop(self._proc)
            self._proc = None


Driver = InProcess | ReleaseInterpreter
