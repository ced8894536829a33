"""Phase plan: parsing declarations and refusing unsafe plans (no database)."""

from __future__ import annotations

import pytest

from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.phases import covers, read_plan


def rules(plan, severity: str | None = None) -> list[str]:
    return [f.rule for f in plan.findings if severity is None or f.severity == severity]


def three_phase(contract_release: str = "3", migrate_release: str = "2") -> list[dict]:
    return [
        {
            "revision": "a1",
            "decl": 'phase = "expand"\nrelease = "1"\nreplaces = {"users.name": "users.full_name"}',
        },
        {
            "revision": "a2",
            "down": "a1",
            "decl": f'phase = "migrate"\nrelease = "{migrate_release}"\n'
            'replaces = {"users.name": "users.full_name"}',
        },
        {
            "revision": "a3",
            "down": "a2",
            "decl": f'phase = "contract"\nrelease = "{contract_release}"\ndrops = ["users.name"]',
        },
    ]


def test_phase_from_module_constant(project):
    plan = read_plan(project([{"revision": "a1", "decl": 'phase = "Migrate"'}]))
    assert plan.get("a1").phase == "migrate"
    assert plan.ok


def test_phase_from_docstring_line(project):
    plan = read_plan(
        project(
            [
                {
                    "revision": "a1",
                    "doc": "Add a thing.\n\nPhase: contract\n",
                    "decl": 'drops = ["t.c"]',
                }
            ]
        )
    )
    assert plan.get("a1").phase == "contract"


def test_missing_phase_names_the_file_and_the_fix(project):
    plan = read_plan(project([{"revision": "a1"}]))
    [f] = [f for f in plan.findings if f.rule == "missing-phase"]
    assert f.revision == "a1"
    assert "versions/a1_rev.py" in f.message
    assert 'phase = "expand"' in (f.fix or "")
    assert not plan.ok


def test_unknown_phase_is_refused(project):
    plan = read_plan(project([{"revision": "a1", "decl": 'phase = "shrink"'}]))
    assert rules(plan) == ["unknown-phase"]
    assert "'shrink'" in plan.findings[0].message


def test_constant_and_docstring_must_agree(project):
    plan = read_plan(
        project([{"revision": "a1", "doc": "Phase: migrate", "decl": 'phase = "expand"'}])
    )
    assert "conflicting-phase" in rules(plan)


def test_each_revision_is_its_own_release_by_default(project):
    plan = read_plan(
        project(
            [
                {"revision": "a1", "decl": 'phase = "expand"'},
                {"revision": "a2", "down": "a1", "decl": 'phase = "expand"'},
            ]
        )
    )
    assert [r for r, _ in plan.releases()] == ["a1", "a2"]
    assert not plan.get("a1").release_declared


def test_declared_release_from_int_and_docstring(project):
    plan = read_plan(
        project(
            [
                {"revision": "a1", "decl": 'phase = "expand"\nrelease = 7'},
                {"revision": "a2", "down": "a1", "doc": "Release: 7", "decl": 'phase = "expand"'},
            ]
        )
    )
    assert plan.releases()[0][0] == "7"
    assert [i.revision for i in plan.releases()[0][1]] == ["a1", "a2"]


def test_good_expand_migrate_contract_plan_passes(project):
    plan = read_plan(project(three_phase()))
    assert plan.ok, plan.findings
    assert plan.get("a3").drops == ["users.name"]
    assert plan.replaced_pairs() == {"users.name": "users.full_name"}


def test_two_heads_are_refused(project):
    plan = read_plan(
        project(
            [
                {"revision": "a1", "decl": 'phase = "expand"'},
                {"revision": "b1", "down": "a1", "decl": 'phase = "expand"'},
                {"revision": "c1", "down": "a1", "decl": 'phase = "expand"'},
            ]
        )
    )
    [f] = [f for f in plan.findings if f.rule == "multiple-heads"]
    assert "b1" in f.message and "c1" in f.message
    assert "versions/b1_rev.py" in f.message
    assert "down_revision" in (f.fix or "")
    assert not plan.linear


def test_merge_revision_is_refused(project):
    plan = read_plan(
        project(
            [
                {"revision": "a1", "decl": 'phase = "expand"'},
                {"revision": "b1", "down": "a1", "decl": 'phase = "expand"'},
                {"revision": "c1", "down": "a1", "decl": 'phase = "expand"'},
                {"revision": "m1", "down": ("b1", "c1"), "decl": 'phase = "expand"'},
            ]
        )
    )
    assert "non-linear-history" in rules(plan)
    assert not plan.linear


def test_contract_in_same_release_as_its_expand_is_refused(project):
    revs = three_phase()
    revs[2]["decl"] = 'phase = "contract"\nrelease = "1"\ndrops = ["users.name"]'
    plan = read_plan(project(revs))
    assert "contract-same-release-as-expand" in rules(plan)
    # a release must also stay contiguous: 1, 2, 1 is out of order
    assert "release-out-of-order" in rules(plan)


def test_contract_without_an_earlier_migrate_is_refused(project):
    plan = read_plan(
        project(
            [
                {"revision": "a1", "decl": 'phase = "expand"\nrelease = "1"'},
                {
                    "revision": "a2",
                    "down": "a1",
                    "decl": 'phase = "contract"\nrelease = "2"\ndrops = ["users.name"]',
                },
            ]
        )
    )
    [f] = [f for f in plan.findings if f.rule == "contract-before-migrate"]
    assert f.target == "users.name"
    assert "replaces" in (f.fix or "")


def test_contract_in_same_release_as_its_migrate_is_refused(project):
    plan = read_plan(project(three_phase(contract_release="2", migrate_release="2")))
    assert "contract-before-migrate" in rules(plan)


def test_migrate_that_replaces_the_table_covers_its_columns(project):
    revs = three_phase()
    revs[1]["decl"] = 'phase = "migrate"\nrelease = "2"\nreplaces = {"users": "people"}'
    plan = read_plan(project(revs))
    assert plan.ok, plan.findings
    assert covers("users", "users.name") and not covers("users.name", "users")


def test_drops_outside_contract_and_bad_declarations(project):
    plan = read_plan(
        project(
            [
                {"revision": "a1", "decl": 'phase = "expand"\ndrops = ["users.name"]'},
                {
                    "revision": "a2",
                    "down": "a1",
                    "decl": 'phase = "migrate"\nreplaces = ["users.name"]\nwaivers = ["x"]',
                },
                {
                    "revision": "a3",
                    "down": "a2",
                    "decl": 'phase = "contract"\ndrops = "users.name"',
                },
            ]
        )
    )
    found = rules(plan)
    assert "drops-outside-contract" in found
    assert found.count("invalid-declaration") == 3
    assert "contract-declares-no-drops" in rules(plan, "warning")


def test_declaration_entries_must_be_table_or_column(project):
    plan = read_plan(
        project(
            [
                {"revision": "a1", "decl": 'phase = "contract"\ndrops = ["a.b.c", "users.name"]'},
            ]
        )
    )
    bad = [f for f in plan.findings if f.rule == "invalid-declaration"]
    assert len(bad) == 1 and "'a.b.c'" in bad[0].message
    assert plan.get("a1").drops == ["users.name"]


def test_fixture_good_plan(fixtures):
    plan = read_plan(fixtures / "good")
    assert plan.ok, plan.findings
    assert [(rel, [i.revision for i in infos]) for rel, infos in plan.releases()] == [
        ("1", ["0001", "0002"]),
        ("2", ["0003"]),
        ("3", ["0004"]),
    ]
    assert plan.get("0004").phase == "contract"


def test_project_path_errors_are_clear(tmp_path):
    with pytest.raises(LabConfigError, match="holds no alembic.ini") as exc:
        read_plan(tmp_path)
    assert "Fix:" in str(exc.value)
    with pytest.raises(LabConfigError, match="does not exist"):
        read_plan(tmp_path / "nope")


def test_a_split_declares_a_list_of_replacements(project):
    split = '{"users.name": ["users.first_name", "users.last_name"]}'
    plan = read_plan(
        project(
            [
                {"revision": "a1", "decl": f'phase = "expand"\nrelease = "1"\nreplaces = {split}'},
                {
                    "revision": "a2",
                    "down": "a1",
                    "decl": f'phase = "migrate"\nrelease = "2"\nreplaces = {split}',
                },
                {
                    "revision": "a3",
                    "down": "a2",
                    "decl": 'phase = "contract"\nrelease = "3"\ndrops = ["users.name"]',
                },
            ]
        )
    )
    assert plan.ok, plan.findings
    assert plan.get("a2").replaces == {"users.name": ["users.first_name", "users.last_name"]}


@pytest.mark.parametrize("value", ["[]", '["users.first_name", 3]', '["a.b.c"]'])
def test_a_bad_list_of_replacements_is_refused(project, value):
    plan = read_plan(
        project(
            [
                {
                    "revision": "a1",
                    "decl": f'phase = "migrate"\nreplaces = {{"users.name": {value}}}',
                },
            ]
        )
    )
    assert rules(plan) == ["invalid-declaration"]
