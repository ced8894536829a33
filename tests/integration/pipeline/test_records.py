"""Records never fail a delivery, and a bug of ours is said as one (the flow's final state,
its report), never as the user's bad input."""

from __future__ import annotations

from support.pipeline import commit_release, served_version

from prefect_delivery.blocks.errors import ConfigError, InternalError


def test_a_picture_that_cannot_be_drawn_and_a_bug_after_it(
    make_env, hello_repo, artifact_store, monkeypatch
):
    from prefect_delivery.flows import delivery as delivery_flow
    from prefect_delivery.tasks import pictures

    env = make_env("rec")
    sha = commit_release(hello_repo, "1.0.0")

    def no_backend(*args, **kwargs):
        raise RuntimeError("matplotlib's backend is gone")

    monkeypatch.setattr(pictures, "rollout_png", no_backend)
    state = delivery_flow.delivery(
        service_dir=hello_repo.path,
        commit=sha,
        environments=[env.name],
        auto_approve=True,
        artifact_store=artifact_store,
        return_state=True,
    )
    assert state.is_completed(), state.message  # the picture is a record, not a gate
    assert served_version(env)["commit"] == sha

    def bug(*args, **kwargs):
        raise TypeError("mark_finished() got an unexpected keyword argument")

    monkeypatch.setattr(delivery_flow.checkpoint, "mark_finished", bug)
    state = delivery_flow.delivery(
        service_dir=hello_repo.path,
        commit=sha,
        environments=[env.name],
        auto_approve=True,
        artifact_store=artifact_store,
        return_state=True,
    )
    assert state.is_failed()
    assert "internal error in prefect-delivery (a bug, not your input)" in state.message
    assert "TypeError" in state.message and "the logs of flow run" in state.message
    error = state.result(raise_on_failure=False)
    assert isinstance(error, InternalError) and not isinstance(error, ConfigError)
    assert "internal error" in error.summary.text()  # the report says what it was
    assert served_version(env)["commit"] == sha  # nothing live changed
