"""Helpers for unit tests of migrations_lab: tiny Alembic projects written to tmp_path."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "alembic"

_REVISION = '''"""{doc}"""

from alembic import op

revision = {revision!r}
down_revision = {down!r}
{declarations}


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
    pass
'''


def write_project(root: Path, revisions: list[dict]) -> Path:
    """Write an Alembic project; each revision: revision, down, doc, decl, upgrade."""
    (root / "versions").mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "good" / "env.py", root / "env.py")
    shutil.copy(FIXTURES / "good" / "alembic.ini", root / "alembic.ini")
    for rev in revisions:
        body = rev.get("upgrade", 'op.execute("SELECT 1")')
        text = _REVISION.format(
            doc=rev.get("doc", f"Revision {rev['revision']}."),
            revision=rev["revision"],
            down=rev.get("down"),
            declarations=textwrap.dedent(rev.get("decl", "")).strip(),
            upgrade=textwrap.indent(textwrap.dedent(body).strip(), "    "),
        )
        (root / "versions" / f"{rev['revision']}_rev.py").write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Callable[[list[dict]], Path]:
    counter = {"n": 0}

    def make(revisions: list[dict]) -> Path:
        counter["n"] += 1
        return write_project(tmp_path / f"p{counter['n']}", revisions)

    return make


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
