"""Small filesystem and process helpers shared by the blocks: state folder, atomic writes, pids."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

#: all a service's code gets of the environment it is started from (instances, its tests, its
#: end-to-end checks): nothing of the worker's own (its Prefect API key, say)
BASE_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR")


def service_env() -> dict[str, str]:
    """The worker's environment, reduced to ``BASE_ENV_KEYS``."""
    return {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}


def default_state_dir() -> str:
    """Where runtime state lives unless a block says otherwise: $DELIVERY_STATE_DIR or XDG."""
    env = os.environ.get("DELIVERY_STATE_DIR")
    if env:
        return str(Path(env).expanduser().resolve())
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "prefect-delivery")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def process_start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot; with the pid it names one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free right now on a loopback address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
