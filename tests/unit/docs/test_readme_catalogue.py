"""The README's catalogues stay true: every row of "Bad input, catalogued" and of "Attacks on
the gates" names a test that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SECTION = "## Bad input, catalogued"
ATTACKS = "### Attacks on the gates"


def catalogue_rows(section: str = SECTION) -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    assert section in text, f"README.md lost its '{section}' section"
    body = text.split(section, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    rows = []
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and "::" in cells[-1]:
            rows.append(cells)
    return rows


def test_every_row_names_an_existing_test():
    rows = catalogue_rows()
    assert len(rows) >= 30
    attacks = catalogue_rows(ATTACKS)
    assert len(attacks) >= 9  # the nine of the issue, and what trying found
    for cells in rows + attacks:
        for ref in re.findall(r"`([^`]+::[^`]+)`", cells[-1]):
            path, _, name = ref.partition("::")
            source = ROOT / path
            assert source.exists(), f"{ref}: no such file"
            function = name.split("[", 1)[0]
            assert re.search(rf"^\s*def {re.escape(function)}\(", source.read_text(), re.M), (
                f"{ref}: no test function {function} in {path}"
            )


def test_every_row_says_what_the_user_sees():
    for cells in catalogue_rows() + catalogue_rows(ATTACKS):
        assert len(cells[-2]) > 15, f"row {cells[0]!r} shows no message"
