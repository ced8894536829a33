"""A picture of a rollout and its bake: what the new and the stable release did, over time.

From a list of :class:`RolloutInterval` (one per analysis interval) it draws, sharing one time
axis:

- top: error rate of the new and of the stable release;
- middle: latency p50 (dashed) and p95 (solid) of both;
- bottom: the share of traffic on the new release as filled bands, one per step;

with the step boundaries as vertical lines through all three and each verdict marked where it
was reached (green: Successful, red: Failed, grey: Inconclusive, purple: Error). The result is
PNG bytes (matplotlib, Agg backend: no display needed). ``publish_rollout_picture`` attaches
it to the running flow as a markdown artifact that embeds the PNG as a ``data:image/png`` URI,
which the Prefect 3.9 UI renders as an image (see the README, "A picture of the rollout").
"""

from __future__ import annotations

import base64
import io
from datetime import datetime

from pydantic import BaseModel, Field

#: colours of the picture (tests look for them in the pixels)
NEW, STABLE = "#d62728", "#1f77b4"
BAND = "#ff7f0e"
VERDICT_COLOURS = {
    "Successful": "#2ca02c",
    "Failed": "#d62728",
    "Inconclusive": "#7f7f7f",
    "Error": "#9467bd",
}


class RolloutInterval(BaseModel):
    """One interval of a rollout or a bake: what both releases did while it lasted.

    ``weight`` is the share of traffic (percent, 0..100) on the new release; ``step`` names
    the step the interval belongs to ("canary 5%", "bake"): a boundary is drawn where it
    changes. ``verdict`` is the judge's outcome reached at this interval, if any (a step's
    final verdict, or every interval's): Successful, Failed, Inconclusive or Error.
    """

    at: datetime
    weight: float = Field(ge=0, le=100)
    step: str = ""
    new_p50_ms: float | None = None
    new_p95_ms: float | None = None
    new_error_rate: float | None = Field(default=None, ge=0, le=1)
    stable_p50_ms: float | None = None
    stable_p95_ms: float | None = None
    stable_error_rate: float | None = Field(default=None, ge=0, le=1)
    verdict: str | None = None


def _series(records: list[RolloutInterval], field: str) -> list[float]:
    return [float("nan") if getattr(r, field) is None else getattr(r, field) for r in records]


def step_boundaries(records: list[RolloutInterval]) -> list[tuple[datetime, str]]:
    """Where each step starts (its first interval) and its name."""
    marks: list[tuple[datetime, str]] = []
    for before, record in zip([None, *records], records, strict=False):
        if before is None or record.step != before.step:
            marks.append((record.at, record.step))
    return marks


def draw(records: list[RolloutInterval], title: str = "Rollout"):
    """The picture as a matplotlib Figure (not rendered yet)."""
    if not records:
        raise ValueError("no intervals to draw: a picture needs at least one interval record")
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    records = sorted(records, key=lambda r: r.at)
    times = [r.at for r in records]
    # a fixed layout: matplotlib's constrained layout cost a third of the render
    fig = Figure(figsize=(10, 7.5), dpi=100)
    errors, latency, traffic = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [2, 3, 1.4], "hspace": 0.12}
    )
    fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.08)
    fig.suptitle(title)

    percent = [100 * v for v in _series(records, "new_error_rate")]
    errors.plot(times, percent, color=NEW, marker="o", ms=3, label="new errors")
    percent = [100 * v for v in _series(records, "stable_error_rate")]
    errors.plot(times, percent, color=STABLE, marker="o", ms=3, label="stable errors")
    errors.set_ylabel("error rate (%)")
    errors.set_ylim(bottom=0)

    for field, colour, style, label in (
        ("new_p95_ms", NEW, "-", "new p95"),
        ("new_p50_ms", NEW, "--", "new p50"),
        ("stable_p95_ms", STABLE, "-", "stable p95"),
        ("stable_p50_ms", STABLE, "--", "stable p50"),
    ):
        latency.plot(times, _series(records, field), color=colour, ls=style, label=label)
    latency.set_ylabel("latency (ms)")
    latency.set_ylim(bottom=0)

    # the traffic band: each interval's weight held until the next interval (one step-shaped
    # polygon: a polygon per interval cost a bake of 120 intervals 0.4 s more to render)
    edges = [*times, times[-1] + (times[-1] - times[-2] if len(times) > 1 else _second())]
    weights = [r.weight for r in records]
    traffic.fill_between(
        edges,
        [*weights, weights[-1]],
        step="post",
        color=BAND,
        alpha=0.6,
        lw=0,
        label="traffic on new",
        gid="traffic-band",
    )
    traffic.set_ylim(0, 105)
    traffic.set_ylabel("traffic on new (%)", fontsize=8)
    traffic.set_xlabel("time (UTC)")

    for at, name in step_boundaries(records):
        for axis in (errors, latency, traffic):
            axis.axvline(at, color="black", lw=0.8, ls=":", gid="step-boundary")
        traffic.annotate(
            name, (at, 100), xytext=(3, -2), textcoords="offset points", va="top", fontsize=8
        )

    top = max([v for v in _series(records, "new_p95_ms") if v == v] or [1.0])
    for record in records:
        if record.verdict:
            colour = VERDICT_COLOURS.get(record.verdict, "black")
            latency.scatter(
                [record.at],
                [top * 1.05],
                marker="v",
                s=90,
                color=colour,
                zorder=5,
                gid=f"verdict-{record.verdict}",
            )
            latency.annotate(
                record.verdict,
                (record.at, top * 1.05),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color=colour,
            )
    latency.set_ylim(top=top * 1.25)
    for axis in (errors, latency, traffic):
        axis.grid(alpha=0.3)
    for axis in (errors, latency):  # the traffic axis says what it shows; its steps are named
        axis.legend(loc="upper left", fontsize=8)
    return fig


def _second():
    from datetime import timedelta

    return timedelta(seconds=1)


def rollout_png(records: list[RolloutInterval], title: str = "Rollout") -> bytes:
    """The picture as PNG bytes."""
    buffer = io.BytesIO()
    draw(records, title).savefig(buffer, format="png")
    return buffer.getvalue()


def picture_markdown(png: bytes, title: str, records: list[RolloutInterval]) -> str:
    """Markdown that shows the PNG (embedded as a data URI) and the verdicts under it."""
    from prefect_delivery.blocks.secrets import mask

    encoded = base64.b64encode(png).decode()
    title = mask(title).replace("]", ")").replace("[", "(")
    # the text is masked, the picture's base64 is not (the masker must not rewrite it)
    lines = [f"# {title}", "", f"![{title}](data:image/png;base64,{encoded})", ""]
    verdicts = [r for r in records if r.verdict]
    if verdicts:
        lines += ["| at (UTC) | step | traffic on new | verdict |", "|---|---|---|---|"]
        lines += [
            mask(f"| {r.at:%H:%M:%S} | {r.step} | {r.weight:g}% | {r.verdict} |") for r in verdicts
        ]
    return "\n".join(lines) + "\n"


def publish_rollout_picture(
    key: str,
    records: list[RolloutInterval],
    title: str = "Rollout",
    description: str | None = None,
) -> bytes:
    """Draw the rollout and attach it to the current flow run as the markdown artifact
    ``key`` (lowercase letters, digits, dashes); returns the PNG bytes."""
    from prefect.artifacts import create_markdown_artifact

    from prefect_delivery.blocks.secrets import mask

    png = rollout_png(records, title)
    create_markdown_artifact(
        markdown=picture_markdown(png, title, records),
        key=key,
        description=mask(description or title),
    )
    return png


def from_analysis_runs(runs: list) -> list[RolloutInterval]:
    """The intervals of a rollout's analysis runs (tasks/analysis_run.AnalysisRun: canary or
    rolling steps, the verification, the bake), in order, as the picture's records; each run's
    final verdict is marked at its last interval, a Failed one where it was reached."""
    records: list[RolloutInterval] = []
    for run in runs:
        if run is None:
            continue
        for n, interval in enumerate(run.intervals):
            last = n == len(run.intervals) - 1
            verdict = interval.outcome if last or interval.outcome == "Failed" else None
            records.append(
                RolloutInterval(
                    at=interval.at,
                    weight=interval.new_weight_pct if interval.new_weight_pct is not None else 0.0,
                    step=run.label,
                    new_p50_ms=interval.new_p50_ms,
                    new_p95_ms=interval.new_p95_ms,
                    new_error_rate=interval.new_interval_error_rate,
                    stable_p50_ms=interval.stable_p50_ms,
                    stable_p95_ms=interval.stable_p95_ms,
                    stable_error_rate=interval.stable_interval_error_rate
                    if interval.stable_p50_ms is not None or interval.stable_requests
                    else None,
                    verdict=verdict,
                )
            )
    return records


def publish_rollout(where: str, runs: list, title: str) -> bytes | None:
    """The rollout picture of one service's analysis runs in an environment (``where``:
    'environment/service') as the artifact ``rollout-<environment>-<service>``. Never raises:
    a picture is a record, not a gate, so every step of making it (the records too) is inside
    the guard, and what went wrong is a warning."""
    from prefect_delivery.tasks.runtime.log import run_logger
    from prefect_delivery.tasks.runtime.progress import artifact_key

    try:
        records = from_analysis_runs(runs)
        if not records:
            return None
        return publish_rollout_picture(artifact_key("rollout", where), records, title)
    except Exception as exc:  # noqa: BLE001
        run_logger().warning(
            "could not draw the rollout picture of %s (the delivery goes on): %s",
            where,
            f"{type(exc).__name__}: {str(exc)[:300]}",
        )
        return None
