"""Benchmark: how fast a person's or a monitor's rollback gives users the previous release.

    python -m bench.rollback [--concurrency 8] [--no-docker] [--no-server]

Every row: an environment serves release 2 with release 1 verified before it and kept warm; a
separate process (bench/load.py) keeps steady load on the frontend. The clock starts when the
command is started (or the alert event is emitted) and stops at the load generator's first
answer from release 1 and at the moment after which every answer is from release 1; failed
requests are every non-2xx and connection error of the whole row. Rows:

- ``delivery rollback ENV`` on the process target and on the Docker target (break glass);
- a monitor's alert (the verification-failed event, ``delivery.source=monitor``) on a real
  Prefect server, acted on by ``delivery monitor-listen``;
- ``delivery rollback ENV`` while a delivery of release 2 is in its bake (preempting it);
- today's path beside them: ``delivery rollback ENV --through-flow`` (the rollback flow: Prefect
  loads, the flow waits for the environment's slot, verifies, switches, records).

Then ``delivery status`` wall time. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.zero_downtime import (
    WORK,
    Load,
    build_releases,
    docker_target,
    failed,
    make_env,
    set_bake,
)

VENV_BIN = Path(sys.executable).parent
STATE = WORK / "state"
#: what the issue measured before the break-glass path, on a fresh clone after `make demo`
STATUS_BEFORE_S = 9.6
ROLLBACK_BEFORE_S = 14.6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server() -> subprocess.Popen:
    """A real Prefect server on loopback, for the alert row and the bookkeeping flows."""
    import httpx

    port = free_port()
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    proc = subprocess.Popen(
        [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PREFECT_UI_ENABLED": "false"},
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(os.environ["PREFECT_API_URL"] + "/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the Prefect server did not start within 120 s")


def times(records: list[dict], t0: float, previous: str) -> tuple[float, float]:
    """Seconds from t0 to the first answer from ``previous`` and to 100 % from it."""
    after = [r for r in records if r["end"] >= t0]
    first = min((r["end"] for r in after if r["version"] == previous), default=float("nan"))
    others = [r["end"] for r in after if r["version"] not in (previous, None)]
    return first - t0, max(first, max(others, default=first)) - t0


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "delivery"), *args], capture_output=True, text=True, timeout=600
    )


def two_releases(name: str, releases: dict, target=None, bake_s: float = 0.0):
    from prefect_delivery.flows.deploy import deploy

    env = make_env(name, {"kind": "blue-green", "instances": 2}, STATE, target, bake_s)
    deploy(env.name, releases["v1"])
    deploy(env.name, releases["v2"])
    return env


def row(label: str, env, concurrency: int, act) -> dict:
    """Load on, act (returns the clock's start), wait for the switch to settle, load off."""
    from prefect_delivery.tasks.status import shut_down

    try:
        load = Load(env.url, concurrency)
        t0, note = act(env)
        time.sleep(2.0)
        records = load.stop()
    finally:
        shut_down([env.name], [str(STATE)])
    first, everything = times(records, t0, "1.0.0")
    return {
        "row": label,
        "requests": len(records),
        "failed": failed(records),
        "first": first,
        "all": everything,
        "note": note,
    }


def cli_rollback(*extra: str):
    def act(env):
        t0 = time.time()
        run = cli("rollback", env.name, "--state-dir", str(STATE), *extra)
        took = time.time() - t0
        ok = "ok" if run.returncode == 0 else f"exit {run.returncode}: {run.stderr[-200:]}"
        return t0, f"command returned after {took:.2f} s ({ok})"

    return act


def alert_rollback(env):
    from prefect.events.worker import EventsWorker

    from prefect_delivery.tasks.runtime import events

    listener = subprocess.Popen(
        [
            str(VENV_BIN / "delivery"),
            "monitor-listen",
            "--env",
            env.name,
            "--state-dir",
            str(STATE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        listener.stdout.readline()
        time.sleep(4.0)  # the websocket subscription is made after the line is printed
        serving = env.observe().serving()
        t0 = time.time()
        events.verification_failed(env.name, serving, "bench alert", source="monitor")
        EventsWorker.drain_all(timeout=10)
        deadline = time.time() + 20
        while time.time() < deadline and env.observe().serving().version != "1.0.0":
            time.sleep(0.05)
        return t0, "event emitted -> listener -> break glass"
    finally:
        time.sleep(1.0)
        listener.terminate()
        listener.wait(10)


def preempting_row(concurrency: int) -> dict:
    """A delivery of release 2 in a 120 s bake; `delivery rollback` takes over."""
    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.flows.cli.demo import prepare_repo, set_version
    from prefect_delivery.flows.delivery import DeliveryFailed, delivery
    from prefect_delivery.tasks.status import shut_down

    repo = prepare_repo(WORK / "repo-preempt")
    set_version(repo, "1.0.0")
    first = repo.commit_all("1.0.0")
    ArtifactStore(root=str(WORK / "artifacts-preempt")).save("bench-preempt", overwrite=True)
    env = make_env("rb-preempt", {"kind": "blue-green", "instances": 2}, STATE)
    outcome: dict = {}

    def deliver(commit: str) -> None:
        try:
            outcome["summary"] = delivery(
                service_dir=repo.path,
                commit=commit,
                environments=[env.name],
                auto_approve=True,
                artifact_store="bench-preempt",
            )
        except DeliveryFailed as exc:
            outcome["summary"] = exc.summary

    deliver(first)
    env = set_bake(env, 120.0)
    set_version(repo, "2.0.0")
    second = repo.commit_all("2.0.0")
    worker = threading.Thread(target=deliver, args=(second,), daemon=True)
    worker.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        verified = env.ledger().last("verified")
        if verified is not None and verified.release.commit == second:
            break
        time.sleep(0.2)
    time.sleep(3.0)  # inside the bake

    def act(env):
        t0, note = cli_rollback()(env)
        worker.join(60)
        summary = outcome.get("summary")
        ended = summary.outcome if summary else "still running"
        return t0, f"{note}; the delivery ended {ended}"

    try:
        return row("rollback preempting a delivery in its bake", env, concurrency, act)
    finally:
        shut_down([env.name], [str(STATE)])


def status_seconds() -> float:
    started = time.time()
    cli("status", "--state-dir", str(STATE))
    return time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-docker", action="store_true", help="skip the container row")
    parser.add_argument("--no-server", action="store_true", help="skip the alert row")
    args = parser.parse_args()
    server = None if args.no_server else start_server()
    try:
        releases = build_releases()
        rows = [
            row(
                "delivery rollback (process)",
                two_releases("rb-cli", releases),
                args.concurrency,
                cli_rollback(),
            )
        ]
        target, registry = (None, None) if args.no_docker else docker_target()
        if target is not None:
            images = build_releases(registry)
            env = two_releases("rb-cli-d", images, target)
            rows.append(row("delivery rollback (docker)", env, args.concurrency, cli_rollback()))
        if server is not None:
            env = two_releases("rb-alert", releases)
            rows.append(
                row("monitor alert -> rollback (server)", env, args.concurrency, alert_rollback)
            )
        rows.append(preempting_row(args.concurrency))
        env = two_releases("rb-flow", releases)
        status_now = status_seconds()
        rows.append(
            row(
                "today's path: rollback --through-flow",
                env,
                args.concurrency,
                cli_rollback("--through-flow"),
            )
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    print(
        f"\nRollback under steady load ({args.concurrency} concurrent clients, "
        f"{os.cpu_count()} CPUs; blue-green, 2 instances; clock from the command's start or the "
        "event's emission)\n"
    )
    print("| row | requests | failed | -> first answer from previous | -> 100% previous | note |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['row']} | {r['requests']} | {r['failed']} | {r['first']:.3f} s | "
            f"{r['all']:.3f} s | {r['note']} |"
        )
    print(
        f"\n`delivery status` wall time: {status_now:.2f} s now (no Prefect API, no Prefect "
        f"import); {STATUS_BEFORE_S} s before (the issue's measurement: an ephemeral API first). "
        f"`delivery rollback` before: {ROLLBACK_BEFORE_S} s wall."
    )


if __name__ == "__main__":
    main()
