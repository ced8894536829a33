"""`make test` runs the suite as two groups: together they must hold every test file, once."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def groups() -> dict[str, list[str]]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")  # join continued lines
    return {
        name: value.split()
        for name, value in re.findall(r"^(GROUP_[A-Z]) := (.+)$", text, flags=re.M)
    }


def test_the_groups_cover_every_test_file_once():
    found = groups()
    assert set(found) == {"GROUP_A", "GROUP_B"}
    paths = [ROOT / p for group in found.values() for p in group]
    assert all(p.is_dir() for p in paths), paths
    covered: dict[Path, int] = {}
    for path in paths:
        for test_file in path.rglob("test_*.py"):
            covered[test_file] = covered.get(test_file, 0) + 1
    every = set((ROOT / "tests").rglob("test_*.py"))
    assert every - set(covered) == set(), "not in any group of `make test`"
    assert [f for f, n in covered.items() if n > 1] == []
