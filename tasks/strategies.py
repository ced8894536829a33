"""Strategies: blue-green, canary and rolling, each a plan of steps (pure data, no I/O).

The deploy flow executes a plan step by step through tasks; a strategy never touches the router or
a target itself. Every plan keeps the stable release serving until the new one has proven
itself, and every step can be undone by a weight change.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.settings import StrategySettings


@dataclass(frozen=True)
class Launch:
    """Start instances of the new release beside the stable one; health-check and smoke each."""

    count: int
    slot: str  # 'green'/'blue' for blue-green (resolved at run time), 'canary', 'r<i>'


@dataclass(frozen=True)
class Baseline:
    """Measure the stable release through the frontend before the new one takes traffic."""


@dataclass(frozen=True)
class Shift:
    """Send ``percent`` of traffic to the new release, the rest to the stable one."""

    percent: int


@dataclass(frozen=True)
class Replace:
    """Rolling: new instances [0..index] take over from stable instances [0..index]."""

    index: int
    total: int


@dataclass(frozen=True)
class Analyze:
    """Judge the new release against the stable one on live traffic for a window."""

    window_s: float
    interval_s: float
    max_extensions: int
    label: str


@dataclass(frozen=True)
class Verify:
    """Verify the environment through its frontend (health, critical endpoints, thresholds)."""


Step = Launch | Baseline | Shift | Replace | Analyze | Verify


def blue_green(settings: StrategySettings, has_stable: bool) -> list[Step]:
    steps: list[Step] = [Launch(count=settings.instances, slot="auto")]
    if has_stable:
        steps.append(Baseline())
    steps += [Shift(percent=100), Verify()]
    return steps


def canary(settings: StrategySettings, has_stable: bool) -> list[Step]:
    if not has_stable:
        # Nothing to compare against and nobody to protect: the first release goes blue-green.
        return blue_green(settings, has_stable=False)
    steps: list[Step] = [Launch(count=settings.instances, slot="canary"), Baseline()]
    for percent in settings.canary_steps:
        steps.append(Shift(percent=percent))
        if percent < 100:
            steps.append(
                Analyze(
                    window_s=settings.step_pause_s,
                    interval_s=settings.analysis_interval_s,
                    max_extensions=settings.max_extensions,
                    label=f"canary {percent}%",
                )
            )
    steps.append(Verify())
    return steps


def rolling(settings: StrategySettings, has_stable: bool) -> list[Step]:
    if not has_stable:
        return blue_green(settings, has_stable=False)
    steps: list[Step] = [Baseline()]
    total = settings.instances
    for index in range(total):
        steps += [Launch(count=1, slot=f"r{index}"), Replace(index=index, total=total)]
        if index < total - 1:
            steps.append(
                Analyze(
                    window_s=settings.step_pause_s,
                    interval_s=settings.analysis_interval_s,
                    max_extensions=settings.max_extensions,
                    label=f"rolling {index + 1}/{total}",
                )
            )
    steps.append(Verify())
    return steps


PLANNERS = {"blue-green": blue_green, "canary": canary, "rolling": rolling}


def plan(settings: StrategySettings, has_stable: bool) -> list[Step]:
    return PLANNERS[settings.kind](settings, has_stable)


def describe(step: Step) -> str:
    match step:
        case Launch(count=count, slot=slot):
            return f"launch {count} instance(s) [{slot}]"
        case Baseline():
            return "measure baseline on the stable release"
        case Shift(percent=percent):
            return f"shift {percent}% of traffic to the new release"
        case Replace(index=index, total=total):
            return f"replace instance {index + 1}/{total}"
        case Analyze(label=label, window_s=window):
            return f"analyze {label} for {window:g}s"
        case Verify():
            return "verify through the frontend"
    return repr(step)


def weights_for_share(percent: int, instances: int, scale: int = 2) -> list[int]:
    """Integer router weights for ``instances`` servers sharing ``percent`` of traffic."""
    if instances == 0:
        return []
    if percent <= 0:
        return [0] * instances
    each = max(1, round(percent * scale / instances))
    return [each] * instances


def check_capacity(
    environment: str, settings: StrategySettings, stable_count: int, capacity: int
) -> None:
    """Refuse a rollout that cannot run the new release beside the stable one (pure).

    Every strategy keeps the stable release able to take all traffic back at any moment, so
    the stable instances stay while the new ones start: that needs room for both.
    """
    needed = stable_count + settings.instances
    if needed > capacity:
        raise ConfigError(
            f"environment {environment!r} strategy",
            f"a {settings.kind} rollout needs room for {needed} instances ({stable_count} "
            f"stable + {settings.instances} new) but the environment can run {capacity}; "
            "the stable release must keep its instances until the new one has proven itself.",
            "raise the environment's capacity (or the router's server_slots), or lower "
            "strategy.instances.",
        )


def validate_split(split: dict[str, int]) -> dict[str, int]:
    """A traffic split in percent per release must add up to exactly 100 (pure)."""
    bad = {k: v for k, v in split.items() if not 0 <= v <= 100}
    if bad:
        raise ConfigError(
            "traffic split",
            f"{bad} is outside 0..100 percent.",
            "give every release a weight from 0 to 100, together 100",
        )
    total = sum(split.values())
    if total != 100:
        raise ConfigError(
            "traffic split",
            f"weights {split} add up to {total}%, not 100%.",
            "give percentages per release that add up to 100.",
        )
    return split
