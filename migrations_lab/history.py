"""A project's revision graph as plain data (from :meth:`AlembicProject.scripts`), so the
runner can resolve targets and walk paths without importing the revision files itself (they
may import packages only the release's interpreter has)."""

from __future__ import annotations

from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.project import AlembicProject, RevisionScript


class History:
    def __init__(self, project: AlembicProject):
        self.project = project
        self.by_rev: dict[str, RevisionScript] = {s.revision: s for s in project.scripts()}
        self.heads = project.heads()

    def get(self, revision: str) -> RevisionScript | None:
        """A revision by id or unique prefix (None when there is none)."""
        if revision in self.by_rev:
            return self.by_rev[revision]
        matches = [r for r in self.by_rev if r.startswith(revision)]
        if len(matches) > 1:
            raise LabConfigError(f"revision {revision!r}", f"is ambiguous: {', '.join(matches)}.",
                                 "give more characters of the id")
        return self.by_rev[matches[0]] if matches else None

    def head(self) -> str | None:
        if len(self.heads) > 1:
            raise LabConfigError(str(self.project.ini_path),
                                 f"has {len(self.heads)} heads ({', '.join(self.heads)}).",
                                 "merge or rebase so the history has one head")
        return self.heads[0] if self.heads else None

    def between(self, upper: str, lower: str | None) -> list[str]:
        """Revisions from ``upper`` down to (excluding) ``lower``, newest first."""
        out: list[str] = []
        current: str | None = upper
        while current is not None and current != lower:
            script = self.by_rev.get(current)
            if script is None:
                break
            out.append(current)
            if len(script.down_revisions) > 1:
                raise LabConfigError(
                    f"revisions {lower or 'base'} -> {upper}",
                    f"cross the merge revision {current}.",
                    "the lab applies linear histories; pick targets on one line",
                )
            current = script.down_revision
        if current != lower:
            raise LabConfigError(
                f"revisions {lower or 'base'} -> {upper}", "are not on one line of the history.",
                "pick a target that descends from the database's current revision",
            )
        return out
