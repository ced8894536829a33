"""Benchmark: what one ``Environment.save()`` costs the process that saves it.

    python -m bench.block_save [--saves N]

Starts a Prefect server (its own PREFECT_HOME, a free loopback port), then, for each variant, a
fresh Python process that saves an Environment block (process target, HAProxy router, the
default settings) N + 1 times and reports the last N: wall time by the caller's clock around
``save()`` and the process's own CPU (getrusage) over it. The first save registers the block
types and is left out. Variants:

- Prefect's schema: ``SchemaOnce`` bypassed, so every ``model_json_schema()`` call is made
  afresh, as Prefect's ``Block`` does (once for every field of every save);
- shipped: each class's schema made once (blocks/schema_cache.py);
- shipped, one-certificate CA: plus ``PREFECT_API_SSL_CERT_FILE`` as the tests set it (the API
  is plain HTTP; Prefect's client otherwise loads certifi's bundle for every client, 13 of them
  a save).

Figures only: nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

VARIANTS = {
    "prefect-schema": "Prefect's schema, made on every call",
    "shipped": "shipped (SchemaOnce)",
    "shipped-one-ca": "shipped, one-certificate CA file",
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(variant: str, saves: int, state_dir: str) -> None:
    """Save an Environment ``saves + 1`` times; print the last ``saves`` as JSON."""
    from prefect_delivery.blocks.schema_cache import SchemaOnce
    from prefect_delivery.blocks.settings import StrategySettings
    from prefect_delivery.flows.cli.setup import environment

    if variant == "prefect-schema":

        def afresh(cls, *args, **kwargs):
            return super(SchemaOnce, cls).model_json_schema(*args, **kwargs)

        SchemaOnce.model_json_schema = classmethod(afresh)  # type: ignore[method-assign]
    rows = []
    for i in range(saves + 1):
        env = environment(
            f"bench-{variant}-{i}",
            40000 + i,
            state_dir,
            StrategySettings(kind="blue-green"),
            0.0,
            False,
        )
        cpu, wall = _cpu(), time.perf_counter()
        env.save(env.name, overwrite=True)
        rows.append((time.perf_counter() - wall, _cpu() - cpu))
    print(json.dumps(rows[1:]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_ca_file(folder: Path) -> str:
    """The file the tests give PREFECT_API_SSL_CERT_FILE (tests/support/api_tls.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.api_tls import one_ca_file

    return one_ca_file(str(folder))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.block_save")
    parser.add_argument("--saves", type=int, default=10)
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.saves, args.state_dir)
        return

    work = Path(tempfile.mkdtemp(prefix="pd-bench-save-", dir="/tmp"))
    port = _free_port()
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(work / "prefect"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        DO_NOT_TRACK="1",
    )
    env.pop("PREFECT_API_SSL_CERT_FILE", None)
    prefect = str(Path(sys.executable).parent / "prefect")
    with open(work / "server.log", "wb") as log:
        server = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit(f"the Prefect server did not start: see {work / 'server.log'}")
            time.sleep(0.3)
        print(f"Environment.save(), {args.saves} saves per variant after a first (this machine)")
        print("| variant | wall per save (median) | CPU per save (median) |")
        print("|---|---|---|")
        for variant, label in VARIANTS.items():
            child_env = dict(env)
            if variant == "shipped-one-ca":
                child_env["PREFECT_API_SSL_CERT_FILE"] = _one_ca_file(work)
            out = subprocess.run(
                [sys.executable, "-m", "bench.block_save", "--child", variant]
                + ["--saves", str(args.saves), "--state-dir", str(work / "state")],
                env=child_env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rows = json.loads(out.strip().splitlines()[-1])
            wall = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            print(f"| {label} | {wall * 1000:.0f} ms | {cpu * 1000:.0f} ms |")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
