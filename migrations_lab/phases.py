"""Phase plan: which phase and release every revision belongs to, and whether the plan is safe.

Declarations, read from each revision file (module constants; docstring lines also work for
phase and release)::

    phase = "expand"                       # or a docstring line "Phase: expand"
    release = "2"                          # or "Release: 2"; default: its own release
    replaces = {"users.name": "users.full_name"}   # expand / migrate: old -> what supersedes it
    replaces = {"people.name": ["people.first_name", "people.last_name"]}  # a split: a list
    drops = ["users.name"]                 # contract: what it removes ("table" or "table.column")
    waivers = {"rule-id": "reason"}        # lint waivers, see migrations_lab.lint

Phases: ``expand`` (additive, backward compatible), ``migrate`` (backfill; code switches to
the new schema), ``contract`` (drop what the code no longer uses, in a later deploy).

Rules (finding ids in brackets; all errors unless marked warning):

- [multiple-heads] the history has exactly one head.
- [non-linear-history] no branch points or merge revisions: releases ship in one order.
- [missing-phase] every revision declares a phase; [unknown-phase] it is one of the three;
  [conflicting-phase] the constant and the docstring agree.
- [invalid-declaration] ``release`` is a str/int, ``drops`` a list of "table[.column]",
  ``replaces`` a dict of "table[.column]" -> "table[.column]" (or a non-empty list of them,
  when one thing is split into several), ``waivers`` a dict of str.
- [release-out-of-order] a release's revisions are contiguous in the history (a release
  never reappears after a later one).
- [drops-outside-contract] only contract revisions declare ``drops``.
- [contract-declares-no-drops] (warning) a contract that drops nothing says so explicitly.
- [contract-same-release-as-expand] a contract ships in a later release than the expand
  that introduced the replacement of anything it drops.
- [contract-before-migrate] for every dropped item there is a migrate revision, in an
  *earlier* release, whose ``replaces`` covers it (the code stopped using it first). A key
  naming a table covers the table and its columns; a column key covers only that column:
  ``users`` is covered by ``users``; ``users.name`` by ``users.name`` or ``users``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.findings import Finding
from prefect_delivery.migrations_lab.project import AlembicProject, RevisionScript

PHASES = ("expand", "migrate", "contract")
Phase = Literal["expand", "migrate", "contract"]

_DOC_LINE = re.compile(r"^\s*{key}\s*:\s*(?P<value>\S+)\s*$", re.IGNORECASE | re.MULTILINE)
_ITEM = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


class RevisionInfo(BaseModel):
    """What a revision declares, after validation."""

    revision: str
    down_revision: str | None
    path: str
    phase: Phase | None = None
    release: str
    release_declared: bool = False
    drops: list[str] = Field(default_factory=list)
    replaces: dict[str, str | list[str]] = Field(default_factory=dict)
    waivers: dict[str, Any] = Field(default_factory=dict)


class PhasePlan(BaseModel):
    """The revisions base -> head with their phases, and what is wrong with the plan."""

    project: str
    revisions: list[RevisionInfo]
    heads: list[str]
    findings: list[Finding] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.failing for f in self.findings)

    @property
    def linear(self) -> bool:
        """True when the history is one line (the round trip and apply need that)."""
        return not any(
            f.rule in ("multiple-heads", "non-linear-history") for f in self.findings
        )

    def get(self, revision: str) -> RevisionInfo:
        for info in self.revisions:
            if info.revision == revision:
                return info
        raise KeyError(revision)

    def releases(self) -> list[tuple[str, list[RevisionInfo]]]:
        """Releases in shipping order with their revisions."""
        out: list[tuple[str, list[RevisionInfo]]] = []
        for info in self.revisions:
            if out and out[-1][0] == info.release:
                out[-1][1].append(info)
            else:
                out.append((info.release, [info]))
        return out

    def replaced_pairs(self) -> dict[str, str | list[str]]:
        """All ``replaces`` declarations of the project, old -> new (a list for a split)."""
        pairs: dict[str, str | list[str]] = {}
        for info in self.revisions:
            pairs.update(info.replaces)
        return pairs


def _doc_value(doc: str, key: str) -> str | None:
    m = re.compile(_DOC_LINE.pattern.format(key=key), _DOC_LINE.flags).search(doc)
    return m.group("value") if m else None


def declared_phase(script: RevisionScript) -> tuple[str | None, list[str]]:
    """The phase a revision declares (lower-cased) and any conflicts found."""
    const = script.attr("phase")
    doc = _doc_value(script.doc, "Phase")
    problems: list[str] = []
    const_v = const.strip().lower() if isinstance(const, str) else None
    if const is not None and not isinstance(const, str):
        problems.append(f"`phase` must be a string, got {type(const).__name__}")
    doc_v = doc.strip().lower() if doc else None
    if const_v and doc_v and const_v != doc_v:
        problems.append(f"`phase = {const_v!r}` disagrees with docstring `Phase: {doc_v}`")
    return const_v or doc_v, problems


def read_revision(
    script: RevisionScript, relpath: str
) -> tuple[RevisionInfo, list[Finding]]:
    """Validate one revision's declarations."""
    findings: list[Finding] = []

    def bad(rule: str, message: str, fix: str) -> None:
        findings.append(
            Finding(check="plan", rule=rule, revision=script.revision, path=relpath,
                    message=message, fix=fix)
        )

    phase, conflicts = declared_phase(script)
    for problem in conflicts:
        bad("conflicting-phase", f"revision {script.revision} ({relpath}): {problem}.",
            "declare the phase once, as a module constant")
    if phase is None:
        bad("missing-phase",
            f"revision {script.revision} ({relpath}) declares no phase.",
            f'add `phase = "expand"` (or "migrate" / "contract") at module level in {relpath}, '
            "or a docstring line `Phase: expand`")
    elif phase not in PHASES:
        bad("unknown-phase",
            f"revision {script.revision} ({relpath}) declares phase {phase!r}.",
            "use one of expand, migrate, contract")
        phase = None

    release_raw = script.attr("release", _doc_value(script.doc, "Release"))
    release_declared = release_raw is not None
    if release_raw is None:
        release = script.revision
    elif isinstance(release_raw, (str, int)) and not isinstance(release_raw, bool):
        release = str(release_raw).strip()
    else:
        bad("invalid-declaration",
            f"revision {script.revision} ({relpath}): `release` is a "
            f"{type(release_raw).__name__}.", 'write `release = "2"`')
        release, release_declared = script.revision, False

    drops = _items(script.attr("drops", []), "drops", script.revision, relpath, bad)
    replaces = _mapping(script.attr("replaces", {}), "replaces", script.revision, relpath, bad)
    waivers = script.attr("waivers", {})
    if not isinstance(waivers, dict) or not all(isinstance(k, str) for k in waivers):
        bad("invalid-declaration",
            f"revision {script.revision} ({relpath}): `waivers` must be a dict of "
            "rule id -> reason.", 'write `waivers = {"rule-id": "why it is safe here"}`')
        waivers = {}

    info = RevisionInfo(
        revision=script.revision,
        down_revision=script.down_revision,
        path=relpath,
        phase=phase,  # type: ignore[arg-type]
        release=release,
        release_declared=release_declared,
        drops=drops,
        replaces=replaces,
        waivers=waivers,
    )
    return info, findings


def _items(raw: Any, name: str, rev: str, relpath: str, bad: Any) -> list[str]:
    if isinstance(raw, str) or not isinstance(raw, (list, tuple)):
        bad("invalid-declaration",
            f"revision {rev} ({relpath}): `{name}` must be a list of \"table\" or "
            f"\"table.column\" strings, got {type(raw).__name__}.",
            f'write `{name} = ["users.name"]`')
        return []
    good = [str(x) for x in raw if isinstance(x, str) and _ITEM.match(x)]
    for x in raw:
        if not (isinstance(x, str) and _ITEM.match(x)):
            bad("invalid-declaration",
                f"revision {rev} ({relpath}): `{name}` entry {x!r} is not \"table\" or "
                "\"table.column\".", "name tables and columns without quotes or schema")
    return good


def targets(value: str | list[str]) -> list[str]:
    """The items a ``replaces`` value names: one, or several for a split."""
    return [value] if isinstance(value, str) else list(value)


def _mapping(
    raw: Any, name: str, rev: str, relpath: str, bad: Any
) -> dict[str, str | list[str]]:
    if not isinstance(raw, dict):
        bad("invalid-declaration",
            f"revision {rev} ({relpath}): `{name}` must be a dict, got {type(raw).__name__}.",
            f'write `{name} = {{"users.name": "users.full_name"}}`')
        return {}
    out: dict[str, str | list[str]] = {}
    for k, v in raw.items():
        many = isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, str) for x in v)
        if isinstance(k, str) and _ITEM.match(k) and isinstance(v, str) and _ITEM.match(v):
            out[k] = v
        elif isinstance(k, str) and _ITEM.match(k) and many and all(_ITEM.match(x) for x in v):
            out[k] = list(v)
        else:
            bad("invalid-declaration",
                f"revision {rev} ({relpath}): `{name}` entry {k!r}: {v!r} is not "
                "\"table[.column]\": \"table[.column]\".", "name tables and columns plainly")
    return out


def covers(replaced: str, dropped: str) -> bool:
    """Does a ``replaces`` key cover a dropped item? (table covers its columns)"""
    return dropped == replaced or dropped.split(".")[0] == replaced and "." in dropped


def read_plan(project: AlembicProject | str | Path) -> PhasePlan:
    """Read every revision's declarations and check the plan rules."""
    proj = project if isinstance(project, AlembicProject) else AlembicProject(project)
    scripts = proj.scripts()
    heads = proj.heads()
    findings: list[Finding] = []
    infos: list[RevisionInfo] = []
    by_rev = {s.revision: s for s in scripts}
    for script in scripts:
        info, found = read_revision(script, proj.relpath(script.path))
        infos.append(info)
        findings.extend(found)

    structural = list(_structure(heads, scripts, by_rev, proj))
    findings.extend(structural)
    if not structural:
        findings.extend(_release_rules(infos))
    return PhasePlan(project=str(proj.ini_path), revisions=infos, heads=heads, findings=findings)


def _structure(
    heads: list[str],
    scripts: list[RevisionScript],
    by_rev: dict[str, RevisionScript],
    proj: AlembicProject,
) -> Iterable[Finding]:
    if len(heads) > 1:
        files = ", ".join(f"{h} ({proj.relpath(by_rev[h].path)})" for h in heads)
        yield Finding(
            check="plan", rule="multiple-heads",
            message=f"the history has {len(heads)} heads: {files}.",
            why="two heads mean two orders in which schema changes could reach production; "
                "the lab and the pipeline ship one release after another",
            fix=f"rebase: set down_revision of one head (e.g. {heads[-1]}) to the other head "
                "so the history is one line, then re-run the lab",
        )
    children: dict[str, list[str]] = {}
    for s in scripts:
        for d in s.down_revisions:
            children.setdefault(d, []).append(s.revision)
        if len(s.down_revisions) > 1:
            yield Finding(
                check="plan", rule="non-linear-history", revision=s.revision,
                path=proj.relpath(s.path),
                message=f"revision {s.revision} merges {', '.join(s.down_revisions)}.",
                fix="replace the merge by a linear history (set each branch's first "
                    "down_revision to the other branch's last revision)",
            )
    if len(heads) <= 1:
        for parent, kids in children.items():
            if len(kids) > 1:
                yield Finding(
                    check="plan", rule="non-linear-history", revision=parent,
                    message=f"revision {parent} has {len(kids)} children: {', '.join(kids)}.",
                    fix="make the history one line",
                )


def _release_rules(infos: list[RevisionInfo]) -> Iterable[Finding]:
    order: dict[str, int] = {}
    seen_last: str | None = None
    for idx, info in enumerate(infos):
        if info.release != seen_last and info.release in order:
            yield Finding(
                check="plan", rule="release-out-of-order", revision=info.revision,
                path=info.path,
                message=f"revision {info.revision} ({info.path}) is in release "
                        f"{info.release!r}, which appears again after release {seen_last!r}.",
                fix="keep each release's revisions together, in shipping order",
            )
        order.setdefault(info.release, idx)
        seen_last = info.release

    rank = {rel: i for i, rel in enumerate(dict.fromkeys(i.release for i in infos))}
    for info in infos:
        if info.drops and info.phase != "contract" and info.phase is not None:
            yield Finding(
                check="plan", rule="drops-outside-contract", revision=info.revision,
                path=info.path,
                message=f"revision {info.revision} ({info.path}) is a {info.phase} but "
                        f"declares drops {info.drops}.",
                fix="move the drop into a contract revision of a later release",
            )
        if info.phase != "contract":
            continue
        if not info.drops:
            yield Finding(
                check="plan", rule="contract-declares-no-drops", severity="warning",
                revision=info.revision, path=info.path,
                message=f"contract revision {info.revision} ({info.path}) declares no drops.",
                fix='list what it removes: `drops = ["table.column"]`',
            )
        for item in info.drops:
            yield from _contract_item(info, item, infos, rank)


def _contract_item(
    info: RevisionInfo, item: str, infos: list[RevisionInfo], rank: dict[str, int]
) -> Iterable[Finding]:
    my_rank = rank[info.release]
    related = [o for o in infos if any(covers(k, item) for k in o.replaces)]
    for other in related:
        if other.phase == "expand" and other.release == info.release:
            yield Finding(
                check="plan", rule="contract-same-release-as-expand", revision=info.revision,
                path=info.path, target=item,
                message=f"contract {info.revision} drops {item} in release {info.release!r}, "
                        f"the same release as expand {other.revision} ({other.path}).",
                why="while that release rolls out, the previous release still reads and "
                    f"writes {item}",
                fix="ship the contract in a later release than the expand and the migrate",
            )
    earlier_migrate = [
        o for o in related if o.phase == "migrate" and rank[o.release] < my_rank
    ]
    if not earlier_migrate:
        found = ", ".join(f"{o.revision} ({o.phase}, release {o.release})" for o in related)
        yield Finding(
            check="plan", rule="contract-before-migrate", revision=info.revision,
            path=info.path, target=item,
            message=f"contract {info.revision} ({info.path}) drops {item} in release "
                    f"{info.release!r}, but no migrate revision in an earlier release moved "
                    f"the code off it" + (f" (found: {found})." if found else "."),
            why="the release before the contract must already run without the dropped thing, "
                "or it breaks during the deploy and on rollback",
            fix=f'declare `replaces = {{"{item}": "<what supersedes it>"}}` in the migrate '
                "revision that moved the code, and ship the contract in a later release",
        )


def revision_info(project: AlembicProject | str | Path, revision: str) -> RevisionInfo:
    """One revision's declarations (phase, release, drops, replaces, waivers)."""
    plan = read_plan(project)
    try:
        return plan.get(revision)
    except KeyError:
        raise LabConfigError(
            f"revision {revision!r}", f"is not in {plan.project}.",
            "use a revision id from `alembic history`",
        ) from None
