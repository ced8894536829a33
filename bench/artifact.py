"""Benchmark: what a self-contained artifact costs to build, to keep and to prepare on a host.

    python -m bench.artifact [--repeat 5]

hello-service, built by the build stage (its wheel plus every dependency, locked, as wheels
pinned by sha256; tasks/lock.py), then prepared by the process target (one virtualenv per
digest, offline, hashes required; blocks/targets/venv.py). Rows:

- build, cold: a fresh artifact store and wheel cache, and pip's and uv's caches switched off
  (every wheel comes from the index);
- build, a new commit whose dependencies did not change (the same store);
- the bundle: its wheels and their size (runtime, and what the test stage adds);
- prepare a new digest on a host, uv and pip side by side (a fresh state folder each time);
- first instance healthy after prepare: from ``start`` to the first 200 on its health path,
  by the client's clock.

Target: preparing a new digest of hello-service in at most 2 s. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

WORK = Path(tempfile.gettempdir()) / "pd-bench-artifact"


def build_once(repo, store_root: Path, message: str):
    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.source import resolve_source

    sha = repo.commit_all(message)
    started = time.perf_counter()
    co = checkout.fn(resolve_source(repo.path, sha))
    release = build.fn(co, ArtifactStore(root=str(store_root)))
    return release, time.perf_counter() - started


def first_healthy(target, release) -> float:
    started = time.perf_counter()
    instance = target.start(release, "bench", "s0")
    try:
        while time.perf_counter() - started < 30:
            try:
                with urllib.request.urlopen(instance.url + release.run.health_path, timeout=1):
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.01)
        return float("nan")
    finally:
        target.stop(instance)


def main() -> None:
    from prefect_delivery.blocks.artifacts import checked_bundle
    from prefect_delivery.blocks.targets.process import ProcessTarget
    from prefect_delivery.flows.cli.demo import prepare_repo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    repo = prepare_repo(WORK)
    store = WORK / "artifacts"

    saved = {
        k: os.environ.get(k) for k in ("PIP_NO_CACHE_DIR", "UV_NO_CACHE", "DELIVERY_WHEEL_CACHE")
    }
    os.environ.update(
        PIP_NO_CACHE_DIR="1", UV_NO_CACHE="1", DELIVERY_WHEEL_CACHE=str(WORK / "wheel-cache")
    )
    try:
        release, cold = build_once(repo, store, "cold")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    (Path(repo.path) / "src" / "hello_service" / "bench.txt").write_text("a code change\n")
    _, warm = build_once(repo, store, "same dependencies")

    bundle, wheels = checked_bundle(release, with_tests=True)
    size = {w.file: (wheels / w.file).stat().st_size for w in bundle.files(with_tests=True)}
    runtime_mb = sum(size[w.file] for w in [bundle.wheel, *bundle.runtime]) / 1e6
    test_mb = sum(size[w.file] for w in bundle.test) / 1e6

    prepare: dict[str, list[float]] = {"uv": [], "pip": []}
    healthy: list[float] = []
    for n in range(args.repeat):
        for installer in ("uv", "pip"):
            target = ProcessTarget(
                state_dir=str(WORK / f"host-{installer}-{n}"), installer=installer
            )
            started = time.perf_counter()
            target.prepare(release)
            prepare[installer].append(time.perf_counter() - started)
            if installer == "uv":
                healthy.append(first_healthy(target, release))

    print(
        f"\nSelf-contained artifact of hello-service ({os.cpu_count()} CPUs; "
        f"lock: {bundle.lock_source})\n"
    )
    print("| row | figure |")
    print("|---|---|")
    print(f"| build, cold (no caches: every wheel from the index) | {cold:.2f} s |")
    print(f"| build, a new commit with the same dependencies | {warm:.2f} s |")
    print(
        f"| bundle | {1 + len(bundle.runtime)} wheels, {runtime_mb:.1f} MB to run; "
        f"+{len(bundle.test)} wheels, {test_mb:.1f} MB for the tests |"
    )
    for installer, times in prepare.items():
        print(
            f"| prepare a new digest ({installer}) | median {statistics.median(times):.2f} s, "
            f"max {max(times):.2f} s of {len(times)} |"
        )
    print(
        f"| first instance healthy after prepare | median {statistics.median(healthy):.2f} s, "
        f"max {max(healthy):.2f} s |"
    )
    print(
        f"\nTarget: prepare a new digest <= 2 s: "
        f"{'met' if statistics.median(prepare['uv']) <= 2 else 'NOT met'} with uv."
    )


if __name__ == "__main__":
    main()
