"""Benchmark: zero downtime under steady load, per strategy, and how fast a rollback is.

    python -m bench.zero_downtime [--strategies blue-green,canary,rolling] [--concurrency 8]

For each strategy an environment (real HAProxy, real hello-service processes) serves release 1;
a separate process (bench/load.py) keeps steady load on its frontend, counting every non-2xx
and every connection error, while the deploy flow promotes release 2 and then a rollback moves
traffic back to release 1 (kept warm). The naive row stops the live process and starts the new
one in its place. A last row deploys a bad canary (5xx on 30 % of requests) and reports how
long the analysis took to call it. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="pd-zd-", dir="/tmp"))
os.environ.setdefault("PREFECT_HOME", str(WORK / "prefect"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

STRATEGIES = {
    "blue-green": {"kind": "blue-green", "instances": 2},
    "canary": {"kind": "canary", "instances": 2, "canary_steps": [5, 50, 100]},
    "rolling": {"kind": "rolling", "instances": 3},
}


class Load:
    """bench/load.py in its own process."""

    def __init__(self, url: str, concurrency: int, requests: int = 200_000, path: str = "/version"):
        self.out = WORK / f"load-{time.monotonic_ns()}.jsonl"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.load", url, "--concurrency", str(concurrency),
             "--requests", str(requests), "--max-seconds", "180", "--out", str(self.out),
             "--path", path],
            stdout=subprocess.PIPE, text=True,
        )
        self.proc.stdout.readline()  # "started"
        time.sleep(1.0)  # steady state before anything changes

    def stop(self) -> list[dict]:
        time.sleep(1.0)
        self.proc.terminate()
        self.proc.wait(60)
        return [json.loads(line) for line in self.out.read_text().splitlines()]


def p99_ms(records: list[dict], start: float, end: float) -> float:
    window = sorted(
        (r["end"] - r["start"]) * 1000 for r in records if start <= r["start"] <= end
    )
    return window[max(0, int(len(window) * 0.99) - 1)] if window else float("nan")


def rollback_times(records: list[dict], decided: float, previous: str) -> tuple[float, float]:
    """Milliseconds from the rollback decision to the first response from the previous
    release, and to the last response from any other release (after which all are previous)."""
    after = [r for r in records if r["end"] >= decided]
    first = min((r["end"] for r in after if r["version"] == previous), default=float("nan"))
    others = [r["end"] for r in after if r["version"] not in (previous, None)]
    last_other = max(others, default=first)
    return (first - decided) * 1000, (max(first, last_other) - decided) * 1000


def make_env(name: str, strategy: dict, state: Path, target=None, bake_s: float = 0.0):
    """An environment with hello-service registered, as hello-service sees it."""
    from prefect_delivery.blocks.paths import free_port
    from prefect_delivery.blocks.services import ServiceRoute
    from prefect_delivery.blocks.settings import StrategySettings, VerificationSettings
    from prefect_delivery.flows.cli.setup import environment

    settings = StrategySettings(**strategy, keep_previous_s=3600, step_pause_s=2,
                                analysis_interval_s=1)
    env = environment(name, free_port(), str(state), settings, bake_s, False,
                      VerificationSettings(requests=200), target=target)
    env.services = {"hello-service": ServiceRoute(port=env.router.frontend_port)}
    env.save(name, overwrite=True)
    return env.for_service("hello-service")


def set_bake(env, bake_s: float):
    """The environment's bake window, saved; returns it as its service sees it again."""
    from prefect_delivery.blocks.environment import Environment

    base = Environment.load(env.name)
    base.bake_s = bake_s
    base.save(env.name, overwrite=True)
    return base.for_service(env.service)


def failed(records: list[dict]) -> int:
    return sum(1 for r in records if r["status"] != 200)


def strategy_row(name: str, releases: dict, concurrency: int, target=None) -> dict:
    from prefect_delivery.flows.deploy import deploy
    from prefect_delivery.tasks.deploy import restore

    label = f"{name} (docker)" if target is not None else name
    env = make_env(f"zd-{name}{'-d' if target else ''}", STRATEGIES[name], WORK / "state",
                   target)
    try:
        deploy(env.name, releases["v1"])
        load = Load(env.url, concurrency)
        started = time.time()
        outcome = deploy(env.name, releases["v2"])
        deployed = time.time()
        time.sleep(1.0)
        v1 = [i for i in env.target.list(env.name) if i.release.digest == releases["v1"].digest]
        decided = time.time()
        change = restore.fn(env, v1, outcome.new_instances)
        records = load.stop()
    finally:
        from prefect_delivery.tasks.status import shut_down

        shut_down([env.name])
    first, everything = rollback_times(records, decided, "1.0.0")
    return {
        "row": label, "requests": len(records), "failed": failed(records),
        "p99": p99_ms(records, started, deployed), "first": first, "all": everything,
        "switch": change.took_ms, "deploy_s": deployed - started,
    }


def naive_row(releases: dict, concurrency: int) -> dict:
    from prefect_delivery.flows.deploy import deploy
    from prefect_delivery.tasks.deploy import wait_healthy

    env = make_env("zd-naive", {"kind": "blue-green", "instances": 1}, WORK / "state")
    try:
        deploy(env.name, releases["v1"])
        old = env.target.list(env.name)[0]
        load = Load(env.url, concurrency)
        started = time.time()
        env.target.stop(old)  # stop the live process ...
        new = env.target.start(releases["v2"], env.name, "blue")  # ... and start the new one
        wait_healthy(env, new, releases["v2"])
        env.router.detach(old.address)
        env.router.attach(new.address)
        env.router.wait_until_up(new.address)
        env.router.set_weights({new.address: 200})
        deployed = time.time()
        records = load.stop()
    finally:
        from prefect_delivery.tasks.status import shut_down

        shut_down([env.name])
    return {"row": "naive stop-and-start", "requests": len(records), "failed": failed(records),
            "p99": p99_ms(records, started, deployed), "first": float("nan"),
            "all": float("nan"), "switch": float("nan"), "deploy_s": deployed - started}


def bad_canary_row(releases: dict, concurrency: int) -> dict:
    from prefect_delivery.blocks.errors import GateFailed
    from prefect_delivery.flows.deploy import deploy

    env = make_env("zd-badcanary", STRATEGIES["canary"], WORK / "state")
    try:
        deploy(env.name, releases["v1"])
        # on a critical endpoint, where the fault answers 5xx: the requests the bad canary
        # failed for real users are its blast radius
        load = Load(env.url, concurrency, path="/api/greeting?name=bench")
        started = time.time()
        detected, caught_by = float("nan"), "not caught"
        # The 5xx share is random: now and then the preview's single request per endpoint
        # fails first and the release never reaches the canary step. Try again then.
        for _ in range(5):
            try:
                deploy(env.name, releases["bad"])
                caught_by = "PROMOTED (missed)"
                break
            except GateFailed as exc:
                caught_by = exc.gate
                match = re.search(r"rollback after ([0-9.]+)s", str(exc))
                if match:
                    detected = float(match.group(1))
                    break
        ended = time.time()
        records = load.stop()
    finally:
        from prefect_delivery.tasks.status import shut_down

        shut_down([env.name])
    return {"row": "bad canary (5xx 30%)", "requests": len(records), "failed": failed(records),
            "p99": p99_ms(records, started, ended), "detected_s": detected, "interval_s": 1.0,
            "caught_by": caught_by}


def build_releases(registry=None) -> dict:
    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.flows.cli.demo import prepare_repo, set_build_kind, set_fault, set_version
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.source import resolve_source

    kind = "image" if registry is not None else "wheel"
    repo = prepare_repo(WORK / f"repo-{kind}")
    store = ArtifactStore(root=str(WORK / f"artifacts-{kind}"), registry=registry)
    releases = {}
    for key, version, fault in (("v1", "1.0.0", "none"), ("v2", "2.0.0", "none"),
                                ("bad", "3.0.0", "error:0.3")):
        set_build_kind(repo, kind)
        set_version(repo, version)
        set_fault(repo, fault)
        sha = repo.commit_all(version)
        releases[key] = build.fn(checkout.fn(resolve_source(repo.path, sha)), store)
    return releases


def docker_target():
    """A DockerTarget on the local engine and registry, or None when there is no engine."""
    try:
        import docker

        docker.from_env(timeout=10).info()
    except Exception:  # noqa: BLE001 - no engine: the docker rows are skipped
        return None, None
    from prefect_delivery.blocks.registry import ImageRegistry
    from prefect_delivery.blocks.targets.docker import DockerTarget, scope_for
    from prefect_delivery.flows.cli.setup import pick_base_image

    base = pick_base_image("127.0.0.1:5000")
    registry = ImageRegistry(
        address="127.0.0.1:5000", namespace="pd-bench",
        build_args={"BASE_IMAGE": base} if base else {},
    )
    return DockerTarget(registry=registry, scope=scope_for(str(WORK))), registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-docker", action="store_true", help="skip the container rows")
    args = parser.parse_args()
    names = [name for name in args.strategies.split(",") if name]
    releases = build_releases()
    rows = [strategy_row(name, releases, args.concurrency) for name in names]
    target, registry = (None, None) if args.no_docker else docker_target()
    if target is not None:
        images = build_releases(registry)
        rows += [strategy_row(name, images, args.concurrency, target) for name in names]
    else:
        why = "--no-docker" if args.no_docker else "no Docker engine or registry"
        print(f"(container rows skipped: {why})")
    rows.append(naive_row(releases, args.concurrency))
    bad = bad_canary_row(releases, args.concurrency)
    print(f"\nZero downtime under steady load ({args.concurrency} concurrent clients, "
          f"{os.cpu_count()} CPUs; process target unless marked docker)\n")
    print("| strategy | requests | failed | p99 during deploy | rollback: decision -> first "
          "request on previous | -> 100% on previous | weight change |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['row']} | {r['requests']} | {r['failed']} | {r['p99']:.1f} ms | "
              f"{r['first']:.1f} ms | {r['all']:.1f} ms | {r['switch']:.1f} ms |")
    print(f"\nBad canary (5xx on 30% of requests), caught by {bad['caught_by']}: Failed verdict "
          f"{bad['detected_s']:.1f} s after the 5% step started (analysis interval "
          f"{bad['interval_s']:.0f} s); steady load on /api/greeting: {bad['failed']} of "
          f"{bad['requests']} requests failed, all while the canary had 5% of the traffic.")


if __name__ == "__main__":
    main()
