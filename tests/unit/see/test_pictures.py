"""The rollout picture (tasks/pictures.py): a real PNG, not blank, with what it must show."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from prefect_delivery.tasks.pictures import (
    BAND,
    NEW,
    STABLE,
    VERDICT_COLOURS,
    RolloutInterval,
    draw,
    picture_markdown,
    rollout_png,
    step_boundaries,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def rollout() -> list[RolloutInterval]:
    """A canary at 5% (4 intervals, Successful), at 50% (4, Successful), then a bake at 100%
    (6 intervals) that ends Failed on a rise of the new release's errors."""
    records = []
    plan = [("canary 5%", 5)] * 4 + [("canary 50%", 50)] * 4 + [("bake", 100)] * 6
    for i, (step, weight) in enumerate(plan):
        last_of_step = i + 1 == len(plan) or plan[i + 1][0] != step
        failing = step == "bake" and i >= len(plan) - 2
        records.append(
            RolloutInterval(
                at=T0 + timedelta(seconds=5 * i),
                weight=weight,
                step=step,
                new_p50_ms=12 + i % 3,
                new_p95_ms=30 + 2 * (i % 4) + (60 if failing else 0),
                new_error_rate=0.08 if failing else 0.002,
                stable_p50_ms=11.0,
                stable_p95_ms=28.0,
                stable_error_rate=0.001,
                verdict=("Failed" if failing and i == len(plan) - 1 else "Successful")
                if last_of_step
                else None,
            )
        )
    return records


def pixels(png: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(png), format="png")[..., :3]


def share_near(image: np.ndarray, colour: str, tolerance: float = 0.06) -> float:
    from matplotlib.colors import to_rgb

    target = np.array(to_rgb(colour))
    return float((np.abs(image - target).max(axis=-1) < tolerance).mean())


def test_png_is_produced_and_not_blank():
    png = rollout_png(rollout(), "hello 1.1.0 in production")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = pixels(png)
    assert image.shape[0] >= 600 and image.shape[1] >= 900
    assert image.std() > 0.05  # a blank (or one-colour) canvas has none


def test_png_shows_both_releases_and_the_traffic_bands():
    image = pixels(rollout_png(rollout()))
    assert share_near(image, NEW) > 0.001  # new release's lines
    assert share_near(image, STABLE) > 0.001  # stable release's lines
    # the bands are drawn with alpha 0.6 over white: look for the blended colour
    from matplotlib.colors import to_rgb

    blended = 0.6 * np.array(to_rgb(BAND)) + 0.4
    assert float((np.abs(image - blended).max(axis=-1) < 0.04).mean()) > 0.01


def test_picture_without_the_new_release_lacks_its_colour():
    """The colour check can fail: a rollout where only the stable release has figures shows
    no red lines (the Failed verdict marker is red too, so no verdicts here)."""
    records = [
        r.model_copy(
            update={"new_p50_ms": None, "new_p95_ms": None, "new_error_rate": None, "verdict": None}
        )
        for r in rollout()
    ]
    assert share_near(pixels(rollout_png(records)), NEW) < 0.0005


def test_figure_holds_the_series_steps_and_verdicts():
    fig = draw(rollout())
    errors, latency, traffic = fig.axes
    assert {line.get_label() for line in errors.get_lines()} >= {"new errors", "stable errors"}
    assert {line.get_label() for line in latency.get_lines()} >= {
        "new p50",
        "new p95",
        "stable p50",
        "stable p95",
    }
    # one band, stepping with the share of traffic on the new release: the new release's
    # share at each interval, held until the next, 100% at the bake
    [band] = [c for c in traffic.collections if c.get_gid() == "traffic-band"]
    heights = band.get_paths()[0].vertices[:, 1]
    assert {round(h, 6) for h in heights} == {0.0} | {r.weight for r in rollout()}
    boundaries = [line for line in traffic.get_lines() if line.get_gid() == "step-boundary"]
    assert len(boundaries) == 3  # canary 5%, canary 50%, bake
    markers = [c.get_gid() for c in latency.collections if c.get_gid()]
    assert markers == ["verdict-Successful", "verdict-Successful", "verdict-Failed"]
    assert [t.get_text() for t in traffic.texts] == ["canary 5%", "canary 50%", "bake"]
    assert {t.get_text() for t in latency.texts} == {"Successful", "Failed"}
    assert set(VERDICT_COLOURS) >= {"Successful", "Failed", "Inconclusive", "Error"}


def test_step_boundaries_follow_step_changes():
    marks = step_boundaries(rollout())
    assert [name for _, name in marks] == ["canary 5%", "canary 50%", "bake"]
    assert marks[1][0] == T0 + timedelta(seconds=20)


def test_markdown_embeds_the_png_and_lists_verdicts():
    png = rollout_png(rollout())
    text = picture_markdown(png, "Rollout [x]", rollout())
    assert "](data:image/png;base64," in text
    import base64

    encoded = text.split("base64,", 1)[1].split(")", 1)[0]
    assert base64.b64decode(encoded) == png
    assert text.count("| Successful |") == 2 and "| bake | 100% | Failed |" in text
    assert "# Rollout (x)" in text  # brackets would end the image's alt text


def test_no_records_is_refused():
    with pytest.raises(ValueError, match="at least one interval"):
        rollout_png([])


def test_bad_weight_is_refused():
    with pytest.raises(ValueError):
        RolloutInterval(at=T0, weight=150)
