"""The run's summary: stage, result, duration, digest and URLs, for a terminal and the UI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field

from prefect_delivery.blocks.release import Release
from prefect_delivery.blocks.secrets import mask, mask_data


class StageRecord(BaseModel):
    stage: str
    result: str  # passed, failed, skipped, rolled back
    seconds: float
    detail: str = ""


class DeliverySummary(BaseModel):
    service: str
    commit: str
    release: Release | None = None
    stages: list[StageRecord] = Field(default_factory=list)
    urls: dict[str, str] = Field(default_factory=dict)
    outcome: str = "running"  # delivered, failed, rejected
    reason: str = ""

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        """Time a stage; it is recorded as passed unless it raises (then failed) or the body
        sets another result on the yielded record."""
        record = StageRecord(stage=name, result="passed", seconds=0.0)
        started = time.perf_counter()
        try:
            yield record
        except BaseException as exc:
            if record.result == "passed":
                record.result = "failed"
            if not record.detail:
                record.detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise
        finally:
            record.seconds = time.perf_counter() - started
            self.stages.append(record)

    def stage_seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    def text(self) -> str:
        width = max([len(s.stage) for s in self.stages] + [5])
        lines = [
            f"Delivery of {self.service} at {self.commit[:12]}: {self.outcome.upper()}"
            + (f" ({self.reason})" if self.reason else ""),
        ]
        if self.release:
            lines.append(f"  release  {self.release.version}  digest {self.release.digest}")
        lines.append("")
        lines.append(f"  {'stage':<{width}}  {'result':<11} {'time':>7}  detail")
        for s in self.stages:
            lines.append(
                f"  {s.stage:<{width}}  {s.result:<11} {s.seconds:>6.1f}s  {s.detail[:90]}"
            )
        if self.urls:
            lines.append("")
            for env, url in self.urls.items():
                lines.append(f"  {env:<{width}}  {url}")
        return "\n".join(lines)

    def markdown(self) -> str:
        head = f"# Delivery of `{self.service}` at `{self.commit[:12]}`: **{self.outcome}**\n"
        if self.reason:
            head += f"\n> {self.reason}\n"
        if self.release:
            head += (
                f"\n- version: `{self.release.version}`\n- commit: `{self.release.commit}`\n"
                f"- digest: `{self.release.digest}`\n"
            )
        rows = "\n".join(
            f"| {s.stage} | {s.result} | {s.seconds:.1f}s | {s.detail.replace('|', '/')[:200]} |"
            for s in self.stages
        )
        table = f"\n| stage | result | duration | detail |\n|---|---|---|---|\n{rows}\n"
        urls = "".join(f"- {env}: {url}\n" for env, url in self.urls.items())
        return head + table + (f"\n## Environments\n{urls}" if urls else "")

    def publish(self) -> None:
        publish_markdown(
            key=f"delivery-{self.service}",
            markdown=self.markdown(),
            description=f"Delivery of {self.service} at {self.commit[:12]}",
        )


def publish_table(key: str, rows: list[dict], description: str) -> None:
    """A Prefect table artifact (keys: lowercase letters, digits, dashes), masked."""
    create_table_artifact(table=mask_data(rows), key=key, description=mask(description))


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """A Prefect markdown artifact, masked: no secret value the process knows is published."""
    create_markdown_artifact(markdown=mask(markdown), key=key, description=mask(description))


def fmt_ms(value: float | None, unit: str = "", missing: str = "-") -> str:
    """A latency for a table or a sentence: ``12.3`` (or ``12.3 ms`` with unit=" ms")."""
    return f"{value:.1f}{unit}" if value is not None else missing
