"""Two deliveries aimed at the same environment never interleave: the second waits for the
environment's slot (a Prefect global concurrency limit), or is refused when asked to."""

from __future__ import annotations

import os
import subprocess

from support import VENV_BIN
from support.pipeline import commit_release


def start(repo, commit: str, env, store: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(VENV_BIN / "delivery"),
            "run",
            repo.path,
            "--commit",
            commit,
            "--env",
            env.name,
            "--artifact-store",
            store,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def test_second_delivery_waits_then_refusal_is_clear(hello_repo, make_env, artifact_store):
    staging = make_env("one", bake_s=3.0)
    first = commit_release(hello_repo, "1.0.0")
    second = commit_release(hello_repo, "2.0.0")
    # build and test both commits first, so the two runs reach the environment together
    a = start(hello_repo, first, staging, artifact_store)
    b = start(hello_repo, second, staging, artifact_store)
    out_a, err_a = a.communicate(timeout=600)
    out_b, err_b = b.communicate(timeout=600)
    assert a.returncode == 0, err_a[-2000:]
    assert b.returncode == 0, err_b[-2000:]
    assert "busy with another delivery" in err_a + err_b

    # the ledger shows the order: one release's whole rollout, then the other's
    events = [(e.release.commit, e.event) for e in staging.ledger().entries()]
    commits = [c for c, event in events if event in ("deployed", "verified", "baked")]
    switches = sum(1 for x, y in zip(commits, commits[1:], strict=False) if x != y)
    assert set(commits) == {first, second}
    assert switches == 1, events  # X X X Y Y Y: no interleaving

    # refusal: while the slot is held (here by this test, as a delivery holds it), a run
    # with --on-busy refuse stops at once with who holds it, and changes nothing
    import uuid

    from prefect_delivery.tasks.runtime.lock import environment_lock

    holder = str(uuid.uuid4())
    third = commit_release(hello_repo, "3.0.0")
    with environment_lock(staging.key, staging.state_dir, holder, "refuse"):
        refused = subprocess.run(
            [
                str(VENV_BIN / "delivery"),
                "run",
                hello_repo.path,
                "--commit",
                third,
                "--env",
                staging.name,
                "--artifact-store",
                artifact_store,
                "--on-busy",
                "refuse",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ),
        )
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert f"environment '{staging.key}' is being delivered by" in refused.stderr
    assert holder in refused.stderr
    assert not any(e.release.commit == third for e in staging.ledger().entries())
