"""The lab's structured report (pydantic) and its readable rendering."""

from __future__ import annotations

from pydantic import BaseModel, Field, computed_field

from prefect_delivery.migrations_lab.compat import CompatResult
from prefect_delivery.migrations_lab.findings import Finding
from prefect_delivery.migrations_lab.roundtrip import RoundTrip


class RevisionReport(BaseModel):
    revision: str
    down_revision: str | None
    path: str
    phase: str | None
    release: str
    findings: list[Finding] = Field(default_factory=list)
    linted: bool = False
    roundtrip: RoundTrip | None = None
    #: "full"; "history" (up to the baseline: round-tripped, phases and lint not judged);
    #: "upgraded" (up to --since: only upgraded on the way)
    judged: str = "full"
    #: plan findings not judged because the revision is history
    unjudged: int = 0
    suggested_phase: str | None = None
    suggestion: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        failed_rt = self.roundtrip is not None and self.roundtrip.status == "failed"
        return not failed_rt and not any(f.failing for f in self.findings)


class LabReport(BaseModel):
    project: str
    provider: str | None = None
    python: str | None = None
    baseline: str | None = None
    since: str | None = None
    seconds: float = 0.0
    findings: list[Finding] = Field(default_factory=list)  # not tied to one revision
    revisions: list[RevisionReport] = Field(default_factory=list)
    compat: list[CompatResult] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return (
            not any(f.failing for f in self.findings)
            and all(r.ok for r in self.revisions)
            and all(c.passed for c in self.compat)
        )

    def all_findings(self) -> list[Finding]:
        return [*self.findings, *(f for r in self.revisions for f in r.findings)]

    @property
    def errors(self) -> int:
        return sum(1 for f in self.all_findings() if f.failing) + sum(
            1 for c in self.compat if not c.passed
        )

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.all_findings() if f.severity == "warning")


def _finding_lines(f: Finding, indent: str = "    ") -> list[str]:
    if f.waived is not None:
        return [f"{indent}[waived] {f.rule}: {f.target or ''} -- {f.waived}".rstrip()]
    tag = "[error]" if f.severity == "error" else "[warn] "
    lines = [f"{indent}{tag} {f.check} {f.rule}: {f.message}"]
    if f.why:
        lines.append(f"{indent}        why: {f.why}")
    if f.fix:
        lines.append(f"{indent}        fix: {f.fix}")
    return lines


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _roundtrip_lines(out: list[str], r: RevisionReport) -> None:
    if r.roundtrip is None:
        return
    steps = " ".join(f"{s.name}:{'ok' if s.ok else 'FAILED'}" for s in r.roundtrip.steps)
    out.append(f"    round trip: {r.roundtrip.status}" + (f" ({steps})" if steps else ""))
    for note in r.roundtrip.notes:
        out.append(f"    note: {note}")


def format_report(report: LabReport) -> str:
    """Human-readable, one block per revision."""
    out = [f"migrations lab: {report.project}"
           + (f" (provider {report.provider}, {report.seconds:.1f}s)" if report.provider else "")]
    if report.python:
        out.append(f"env.py runs in: {report.python}")
    releases = list(dict.fromkeys(r.release for r in report.revisions))
    out.append(f"plan: {_n(len(report.revisions), 'revision')} in "
               f"{_n(len(releases), 'release')}")
    history = [r for r in report.revisions if r.judged == "history"]
    upgraded = [r for r in report.revisions if r.judged == "upgraded"]
    if report.baseline:
        replayed = any(r.roundtrip and r.roundtrip.status != "skipped" for r in history)
        down = any(r.roundtrip and "from baseline_schema down" in " ".join(r.roundtrip.notes)
                   for r in history)
        how = ("round-tripped from baseline_schema down" if down else
               "round-tripped" if replayed or not report.provider else
               "not replayed, the database starts from baseline_schema")
        out.append(f"baseline: {report.baseline} ({_n(len(history), 'revision')} of history: "
                   f"{how}; phases and lint not judged)")
    if report.since:
        out.append(f"since: {report.since} ({_n(len(upgraded), 'revision')} only upgraded)")
    for f in report.findings:
        out.extend(_finding_lines(f, "  "))
    for r in report.revisions:
        verdict = "ok" if r.ok else "FAIL"
        if r.judged == "upgraded" and r.ok:
            continue
        compact = r.judged == "history" and r.ok and not r.findings
        if not (compact and out and out[-1].endswith(")") and "[history]" in out[-1]):
            out.append("")
        label = r.phase or "?"
        if r.judged != "full":
            label = f"{r.phase or '-'}  [{r.judged}]"
        out.append(f"{r.revision}  {label}  release {r.release}  {r.path}  {verdict}")
        if r.judged == "history" and r.ok and not r.findings:
            rt = r.roundtrip.status if r.roundtrip else "not run"
            if rt == "skipped":
                rt = r.roundtrip.notes[0] if r.roundtrip.notes else "not replayed"
            out[-1] += f"  (round trip: {rt})"
            continue
        if r.judged == "history":
            out.append("    lint: not judged (history)")
            _roundtrip_lines(out, r)
            for f in r.findings:
                out.extend(_finding_lines(f))
            continue
        lint = [f for f in r.findings if f.check == "lint"]
        shown = [f for f in r.findings if f.check != "lint" or f.waived is None]
        waived = [f for f in lint if f.waived is not None]
        if not r.linted:
            out.append("    lint: not run")
        elif not [f for f in lint if f.waived is None]:
            out.append("    lint: clean" + (f" ({len(waived)} waived)" if waived else ""))
        _roundtrip_lines(out, r)
        if r.suggestion and not any(f.rule == "missing-phase" for f in r.findings):
            out.append(f"    suggested phase: {r.suggestion}")
        for f in shown:
            out.extend(_finding_lines(f))
        for f in waived:
            out.extend(_finding_lines(f))
    if report.compat:
        out.append("")
        out.append("compat:")
        for c in report.compat:
            mark = "ok  " if c.passed else "FAIL"
            out.append(
                f"  {mark} release {c.suite_release} suite on release {c.schema_release} schema "
                f"(revision {c.revision or 'base'}, {c.direction}, {c.seconds:.1f}s)"
            )
            if not c.passed and c.output_tail:
                out.extend(f"        | {line}" for line in c.output_tail.splitlines()[-15:])
    for note in report.notes:
        out.append(f"note: {note}")
    out.append("")
    out.append(
        f"result: {'PASS' if report.ok else 'FAIL'} ({_n(report.errors, 'error')}, "
        f"{_n(report.warnings, 'warning')})"
    )
    return "\n".join(out)
