"""The migration stage's pure decisions: who uses what a contract drops, the contract and
rollback gates, pending revisions, the approval's phase line; and the database block's secret."""

from __future__ import annotations

import pytest

from prefect_delivery.blocks.database import PostgresDatabase
from prefect_delivery.blocks.errors import ConfigError, InfrastructureError
from prefect_delivery.migrations_lab.errors import DatabaseUnavailable
from prefect_delivery.migrations_lab.findings import Finding
from prefect_delivery.migrations_lab.phases import PhasePlan, RevisionInfo
from prefect_delivery.migrations_lab.report import LabReport, RevisionReport
from prefect_delivery.migrations_lab.roundtrip import RoundTrip
from prefect_delivery.tasks.schema_gates import (
    ReleaseSchema,
    applied_contracts,
    contract_blockers,
    describe_phase,
    pending_from,
    rehearsal_problems,
    rollback_blockers,
    uses_dropped,
)

SPLIT = {"people.name": ["people.first_name", "people.last_name"]}
PASSWORD = "s3cret-pw-0123"


def info(revision: str, phase: str, **extra) -> RevisionInfo:
    return RevisionInfo(
        revision=revision,
        down_revision=None,
        path=f"versions/{revision}.py",
        phase=phase,
        release=revision[-1],
        **extra,
    )


def history(upto: int = 4) -> PhasePlan:
    revisions = [
        info("0001", "expand"),
        info("0002", "expand", replaces=SPLIT),
        info("0003", "migrate", replaces=SPLIT),
        info("0004", "contract", drops=["people.name"]),
    ][:upto]
    return PhasePlan(project="p", revisions=revisions, heads=[revisions[-1].revision])


def release(upto: int | None, label: str | None = None) -> ReleaseSchema:
    """A release whose migrations end at revision 000<upto> (None: it carries none)."""
    if upto is None:
        return ReleaseSchema(label=label or "no-migrations", digest="sha256:0")
    return ReleaseSchema(
        label=label or f"r{upto}",
        digest=f"sha256:{upto}",
        project="alembic.ini",
        plan=history(upto),
    )


@pytest.mark.parametrize("upto,uses", [(1, True), (2, True), (3, False), (4, False), (None, False)])
def test_a_release_uses_a_dropped_item_until_its_migrations_reach_the_migrate(upto, uses):
    usage = uses_dropped(release(upto), "people.name", history())
    assert usage.uses is uses
    if uses:
        assert f"its migrations end at 000{upto}, before migrate 0003" in usage.reason


def test_a_release_whose_head_the_history_does_not_know_is_assumed_to_use_it():
    other = release(2)
    other.plan.revisions[-1] = info("0002x", "expand")
    other.plan.heads = ["0002x"]
    usage = uses_dropped(other, "people.name", history())
    assert usage.uses and "0002x" in usage.reason


def test_without_a_migrate_that_replaces_it_nothing_proves_it_is_unused():
    plan = history()
    plan.revisions[2] = info("0003", "migrate")  # no `replaces`
    assert uses_dropped(release(4), "people.name", plan).uses


def test_contract_gate_names_the_serving_and_the_warm_release():
    running = [
        (release(3, "hello 1.2.0"), "serves"),
        (release(2, "hello 1.1.0"), "keeps warm for rollback"),
    ]
    [blocker] = contract_blockers(history(), ["0004"], running)
    assert (blocker.contract, blocker.item, blocker.release, blocker.role) == (
        "0004",
        "people.name",
        "hello 1.1.0",
        "keeps warm for rollback",
    )
    assert contract_blockers(history(), ["0003"], running) == []  # no contract pending
    assert contract_blockers(history(), ["0004"], running[:1]) == []


def test_rollback_gate_only_after_the_contract_is_applied():
    assert [c.revision for c in applied_contracts(history(), "0004")] == ["0004"]
    assert applied_contracts(history(), "0003") == []
    assert rollback_blockers(history(), "0003", release(2)) == []
    [blocker] = rollback_blockers(history(), "0004", release(2))
    assert blocker.item == "people.name" and blocker.role == "is the rollback target"
    assert rollback_blockers(history(), "0004", release(3)) == []


def test_pending_revisions():
    schema = release(4, "hello 1.3.0")
    assert pending_from(schema, None, "prod") == ["0001", "0002", "0003", "0004"]
    assert pending_from(schema, "0002", "prod") == ["0003", "0004"]
    assert pending_from(schema, "0004", "prod") == []


def test_a_database_ahead_of_the_release_is_refused_with_the_way_back():
    with pytest.raises(ConfigError) as info_:
        pending_from(release(2, "hello 1.1.0"), "0004", "prod")
    text = str(info_.value)
    assert "is at revision 0004, which the migrations of hello 1.1.0 do not contain" in text
    assert "delivery rollback prod --to" in text


def test_phase_line_for_the_approver():
    assert describe_phase(history(), ["0004"]) == "contract (0004: drops people.name)"
    assert describe_phase(history(), ["0002", "0003"]) == "expand + migrate (0002, 0003)"
    assert describe_phase(history(), []) is None


def test_rehearsal_problems_only_stop_the_pending_revisions():
    bad = Finding(
        check="lint",
        rule="rename-column",
        revision="0002",
        message="revision 0002 (versions/0002.py): RENAME of a column",
        fix="add one",
    )
    report = LabReport(
        project="p",
        revisions=[
            RevisionReport(
                revision="0002",
                down_revision="0001",
                path="v/0002.py",
                phase="expand",
                release="2",
                findings=[bad],
                roundtrip=RoundTrip(revision="0002"),
            ),
            RevisionReport(
                revision="0003",
                down_revision="0002",
                path="v/0003.py",
                phase="migrate",
                release="3",
                roundtrip=RoundTrip(revision="0003", status="skipped"),
            ),
        ],
    )
    assert rehearsal_problems(report, []) == []
    [lint] = rehearsal_problems(report, ["0002"])
    assert (
        lint == "[lint rename-column] revision 0002 (versions/0002.py): RENAME of a column "
        "Fix: add one"
    )
    [skipped] = rehearsal_problems(report, ["0003"])
    assert "revision 0003 (v/0003.py) was not rehearsed" in skipped


# ---------------------------------------------------------------------------- the block
def database() -> PostgresDatabase:
    return PostgresDatabase(url=f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:5/app")


def test_the_url_never_shows():
    db = database()
    for text in (repr(db), str(db), db.model_dump_json(), db.masked_url):
        assert PASSWORD not in text
    assert db.masked_url == "postgresql+psycopg://app:***@127.0.0.1:5/app"


def test_instances_get_it_as_database_url_and_logs_mask_it():
    from prefect_delivery.blocks.secrets import mask

    env = database().instance_env()
    assert env == {"DATABASE_URL": f"postgresql+psycopg://app:{PASSWORD}@127.0.0.1:5/app"}
    assert PASSWORD not in mask(f"connecting with {env['DATABASE_URL']}")


def test_instance_environment_comes_from_the_environment_block():
    from prefect_delivery.blocks.settings import StrategySettings
    from prefect_delivery.flows.cli.setup import environment

    env = environment("stg", 1, "/tmp/x", StrategySettings(), 0, False)
    assert env.instance_env() == {}
    env.database = database()
    assert set(env.instance_env()) == {"DATABASE_URL"}


@pytest.mark.parametrize(
    "secrets,message",
    [
        ({"payments-token": "payments"}, "is not an environment variable name"),
        ({"TOKEN": "s3cr3t value!"}, "is not a Secret block name"),
        ({"DATABASE_URL": "db-url"}, "comes from the environment's database block"),
    ],
)
def test_instance_secrets_name_secret_blocks_not_values(secrets, message):
    from pydantic import ValidationError

    from prefect_delivery.blocks.settings import StrategySettings
    from prefect_delivery.flows.cli.setup import environment

    env = environment("stg", 1, "/tmp/x", StrategySettings(), 0, False)
    with pytest.raises(ValidationError, match=message):
        type(env).model_validate({**env.model_dump(), "instance_secrets": secrets})


@pytest.mark.parametrize(
    "problem,kind",
    [
        ("password authentication failed.", ConfigError),
        ("the database does not exist.", ConfigError),
        ("nothing accepts connections there (connection refused).", InfrastructureError),
    ],
)
def test_database_errors_are_bad_input_or_infrastructure(problem, kind):
    error = database().error(DatabaseUnavailable("database x", problem, "fix it"), "production")
    assert isinstance(error, kind)
    assert "database of production (postgresql+psycopg://app:***@127.0.0.1:5/app)" in str(error)
    assert PASSWORD not in str(error)


def test_a_url_that_is_not_postgres_is_refused_without_showing_it():
    db = PostgresDatabase(url=f"mysql://app:{PASSWORD}@h/db")
    with pytest.raises(ConfigError) as info_:
        db.secret_url()
    assert PASSWORD not in str(info_.value)


# ---------------------------------------------------------------------------- the demo's releases
@pytest.mark.parametrize(
    "n,mode", [(1, "name"), (2, "name"), (3, "split"), (4, "split"), (2, "name")]
)
def test_set_schema_release_picks_the_revisions_and_the_code_mode(tmp_path, n, mode):
    import shutil

    from prefect_delivery.flows.cli.demo import (
        EXAMPLE,
        IGNORED,
        VERSIONS_DIR,
        DemoRepo,
        set_schema_release,
    )

    shutil.copytree(EXAMPLE, tmp_path / "svc", ignore=IGNORED)
    repo = DemoRepo(path=str(tmp_path / "svc"))
    set_schema_release(repo, 4)
    set_schema_release(repo, n)
    files = sorted(p.name[:4] for p in (tmp_path / "svc" / VERSIONS_DIR).glob("0*.py"))
    assert files == [f"000{i}" for i in range(1, n + 1)]
    settings = (tmp_path / "svc" / "src" / "hello_service" / "settings.toml").read_text()
    assert f'people_schema = "{mode}"' in settings
    with pytest.raises(ValueError):
        set_schema_release(repo, 5)
