"""The fault switch: a release can be built bad on purpose, to prove the pipeline catches it.

Read once at start-up from ``HELLO_FAULT`` (environment) or, when unset, from ``fault`` in the
package's ``settings.toml`` (baked into the release by its commit). Values:

- ``none``: a good release
- ``crash``: exit with status 3 before serving anything
- ``unhealthy``: serve, but ``/healthz`` answers 503
- ``error:<share>``: answer 500 to that share of API requests (0 < share <= 1), e.g. ``error:0.3``
- ``slow:<seconds>``: add that delay to every API request, e.g. ``slow:0.2``
- ``late:<seconds>:<error or slow fault>``: a good release for that long after start-up, then
  the fault, e.g. ``late:30:error:0.05`` (a regression that starts late in a bake)
- ``crash-leak``: print the connection string and secrets it was given, then exit with status
  3 (a careless crash, for the pipeline's masking)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from importlib import resources


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Fault:
    kind: str = "none"
    value: float = 0.0
    after_s: float = 0.0  # late: the fault starts this long after start-up

    @property
    def crashes(self) -> bool:
        return self.kind in ("crash", "crash-leak")

    @property
    def leaks(self) -> bool:
        return self.kind == "crash-leak"

    @property
    def unhealthy(self) -> bool:
        return self.kind == "unhealthy"

    @property
    def error_share(self) -> float:
        return self.value if self.kind == "error" else 0.0

    @property
    def delay_s(self) -> float:
        return self.value if self.kind == "slow" else 0.0


def parse_fault(spec: str) -> Fault:
    text = (spec or "none").strip().lower()
    kind, _, arg = text.partition(":")
    if kind in ("none", "crash", "unhealthy", "crash-leak") and not arg:
        return Fault(kind=kind)
    if kind == "late":
        delay, _, inner = arg.partition(":")
        try:
            after = float(delay)
        except ValueError:
            raise FaultSpecError(
                f"fault {spec!r}: late needs seconds and a fault, e.g. late:30:error:0.05"
            ) from None
        fault = parse_fault(inner)
        if fault.kind not in ("error", "slow") or after <= 0:
            raise FaultSpecError(
                f"fault {spec!r}: late takes seconds > 0 and an error or slow fault, "
                "e.g. late:30:error:0.05"
            )
        return Fault(kind=fault.kind, value=fault.value, after_s=after)
    if kind in ("error", "slow"):
        try:
            value = float(arg)
        except ValueError:
            raise FaultSpecError(f"fault {spec!r}: {kind} needs a number, e.g. {kind}:0.3") from None
        if kind == "error" and not 0 < value <= 1:
            raise FaultSpecError(f"fault {spec!r}: error share must be in (0, 1]")
        if kind == "slow" and not 0 < value <= 60:
            raise FaultSpecError(f"fault {spec!r}: slow delay must be in (0, 60] seconds")
        return Fault(kind=kind, value=value)
    raise FaultSpecError(
        f"fault {spec!r} is not one of: none, crash, unhealthy, error:<share>, slow:<seconds>"
    )


def baked_fault() -> str:
    try:
        text = resources.files("hello_service").joinpath("settings.toml").read_text()
    except FileNotFoundError:
        return "none"
    return str(tomllib.loads(text).get("fault", "none"))


def current_fault() -> Fault:
    return parse_fault(os.environ.get("HELLO_FAULT") or baked_fault())
