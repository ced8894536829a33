"""Lint each revision's offline SQL for operations that block reads or writes, and for
phase violations.

Every finding names the revision, the statement, why it is dangerous and the safe form; rule
ids (see ``RULES``) are stable kebab-case strings.

Waivers: a revision may silence a finding with an explicit, reasoned waiver::

    waivers = {
        "create-index-not-concurrently": "users is created in this same revision, it is empty",
        "alter-column-type:users.code": "varchar(20) -> varchar(40) does not rewrite",
    }

A key ``rule-id`` silences that rule in the revision; ``rule-id:target`` only the finding
about that target (an index name, ``table.column`` or a table). A waiver with an empty reason
is itself an error (``waiver-without-reason``), an unknown rule id is ``unknown-waiver`` and a
waiver that silences nothing is reported as ``unused-waiver`` (warning).

``lock_timeout``: a revision with DDL must ``SET lock_timeout`` before its first DDL
statement (an ``env.py`` that emits the SET for every migration satisfies the rule too,
because the rendered SQL of each revision then starts with it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel

from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.findings import Finding, short
from prefect_delivery.migrations_lab.offline import render_upgrade
from prefect_delivery.migrations_lab.phases import PhasePlan, RevisionInfo, covers
from prefect_delivery.migrations_lab.project import AlembicProject
from prefect_delivery.migrations_lab.sqltext import (
    mask_literals,
    split_statements,
    split_top_level,
    unquote,
)


class Rule(BaseModel):
    id: str
    summary: str
    why: str
    fix: str


RULES: dict[str, Rule] = {
    r.id: r
    for r in [
        Rule(id="create-index-not-concurrently", summary="CREATE INDEX without CONCURRENTLY",
             why="builds the index under a SHARE lock: every INSERT, UPDATE and DELETE on the "
                 "table waits until the build finishes",
             fix="CREATE INDEX CONCURRENTLY inside `with op.get_context().autocommit_block():` "
                 "(op.create_index(..., postgresql_concurrently=True))"),
        Rule(id="drop-index-not-concurrently", summary="DROP INDEX without CONCURRENTLY",
             why="takes an ACCESS EXCLUSIVE lock on the table: reads and writes wait",
             fix="DROP INDEX CONCURRENTLY inside an autocommit_block"),
        Rule(id="concurrently-in-transaction",
             summary="CONCURRENTLY inside a transaction block",
             why="PostgreSQL refuses CREATE/DROP INDEX CONCURRENTLY in a transaction; the "
                 "migration fails at deploy time",
             fix="wrap the statement in `with op.get_context().autocommit_block():`"),
        Rule(id="add-column-not-null-without-default",
             summary="ADD COLUMN ... NOT NULL without a default",
             why="fails on a table with rows, and the code of the previous release does not "
                 "write the column",
             fix="add the column nullable (expand), backfill in batches (migrate), then enforce "
                 "NOT NULL through a validated CHECK (contract)"),
        Rule(id="add-column-rewrite",
             summary="ADD COLUMN that rewrites the table",
             why="a volatile default (random(), clock_timestamp(), gen_random_uuid(), "
                 "nextval()), serial, identity or a stored generated column rewrites every "
                 "row under an ACCESS EXCLUSIVE lock",
             fix="add the column without a default (or with a constant one), set the default "
                 "afterwards, backfill existing rows in batches"),
        Rule(id="set-not-null", summary="ALTER COLUMN ... SET NOT NULL",
             why="scans the whole table under an ACCESS EXCLUSIVE lock to prove no NULLs",
             fix="ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c; "
                 "then SET NOT NULL (PostgreSQL 12+ skips the scan) and drop the CHECK"),
        Rule(id="alter-column-type", summary="ALTER COLUMN ... TYPE",
             why="rewrites the table and its indexes under an ACCESS EXCLUSIVE lock unless the "
                 "change is binary-coercible (e.g. varchar(n) -> varchar(m>n) or text)",
             fix="add a new column, backfill, switch the code, drop the old one; or waive "
                 "with the reason the change does not rewrite"),
        Rule(id="add-foreign-key-without-not-valid",
             summary="ADD FOREIGN KEY without NOT VALID",
             why="validates every row while holding SHARE ROW EXCLUSIVE locks on both tables: "
                 "writes wait",
             fix="ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT in a "
                 "separate step (op.create_foreign_key(..., postgresql_not_valid=True))"),
        Rule(id="add-check-without-not-valid", summary="ADD CHECK without NOT VALID",
             why="scans the whole table under an ACCESS EXCLUSIVE lock",
             fix="ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE CONSTRAINT "
                 "(op.create_check_constraint(..., postgresql_not_valid=True))"),
        Rule(id="validate-in-same-transaction",
             summary="VALIDATE CONSTRAINT in the transaction that added it NOT VALID",
             why="the lock taken by ADD CONSTRAINT is held until commit, so the validating "
                 "scan runs under it and writes wait for the whole scan",
             fix="commit between the two: run the VALIDATE inside "
                 "`with op.get_context().autocommit_block():` or in the next revision"),
        Rule(id="add-unique-without-index",
             summary="ADD UNIQUE / PRIMARY KEY constraint that builds its index",
             why="builds the index under an ACCESS EXCLUSIVE lock",
             fix="CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... UNIQUE USING "
                 "INDEX"),
        Rule(id="rename-column", summary="RENAME of a column",
             why="the running release still uses the old name and breaks the moment the "
                 "rename commits",
             fix="add the new column (expand), backfill and switch the code (migrate), drop "
                 "the old one in a later release (contract)"),
        Rule(id="rename-table", summary="RENAME of a table",
             why="the running release still uses the old name and breaks the moment the "
                 "rename commits",
             fix="create the new table (or a view), copy and switch the code, drop the old "
                 "table in a later release (contract)"),
        Rule(id="drop-column-outside-contract", summary="DROP COLUMN outside a contract",
             why="the running release may still read or write the column",
             fix="drop it in a contract revision of a later release, listed in `drops`"),
        Rule(id="drop-table-outside-contract", summary="DROP TABLE outside a contract",
             why="the running release may still use the table",
             fix="drop it in a contract revision of a later release, listed in `drops`"),
        Rule(id="undeclared-drop", summary="contract drops something it does not declare",
             why="the phase plan can only prove the code stopped using what `drops` lists",
             fix="add the item to `drops` (and to `replaces` of the migrate that moved off it)"),
        Rule(id="declared-drop-missing", summary="declared drop not found in the SQL",
             why="`drops` lists something the revision does not drop",
             fix="remove it from `drops` or drop it"),
        Rule(id="missing-lock-timeout", summary="DDL without SET lock_timeout first",
             why="a DDL statement that waits for a lock makes every later query on the table "
                 "queue behind it; without lock_timeout that wait has no bound",
             fix="op.execute(\"SET lock_timeout = '2s'\") before the first DDL (the apply "
                 "runner retries on lock timeout)"),
        Rule(id="unbatched-dml", summary="UPDATE or DELETE without WHERE",
             why="locks every row of the table in one transaction: concurrent writes to any "
                 "row wait until it commits",
             fix="use migrations_lab.batched_backfill (keyset batches, one transaction each)"),
        Rule(id="data-change-in-expand", summary="UPDATE or DELETE in an expand revision",
             why="expand must be additive and backward compatible; data moves belong to the "
                 "migrate phase",
             fix="move the backfill into a migrate revision"),
        Rule(id="offline-render-failed", summary="revision cannot render offline SQL",
             why="the lab cannot lint what it cannot see",
             fix="guard online-only code with `if not op.get_context().as_sql:`"),
        Rule(id="waiver-without-reason", summary="waiver with an empty reason",
             why="a waiver must say why the operation is safe here",
             fix='write `waivers = {"rule-id": "why it is safe here"}`'),
        Rule(id="unknown-waiver", summary="waiver for an unknown rule",
             why="the key does not name a lint rule, so it silences nothing",
             fix="use a rule id from migrations_lab.lint.RULES, optionally `rule-id:target`"),
        Rule(id="unused-waiver", summary="waiver that silences nothing",
             why="stale waivers hide future findings",
             fix="remove the waiver"),
    ]
}

_WAIVER_RULES = {"waiver-without-reason", "unknown-waiver", "unused-waiver"}
_VOLATILE = re.compile(
    r"\b(RANDOM|CLOCK_TIMESTAMP|GEN_RANDOM_UUID|UUID_GENERATE_V\w*|NEXTVAL|TIMEOFDAY)\s*\("
)
_NAME = r'(?:"(?:[^"]|"")+"|[^\s(),"]+)'
_QNAME = rf"{_NAME}(?:\.{_NAME})?"
_DDL = re.compile(r"^(CREATE|ALTER|DROP|TRUNCATE|COMMENT|REINDEX|CLUSTER|LOCK|VACUUM)\b")


@dataclass
class LintState:
    """Carried across revisions in order: NOT NULL checks that have been validated."""

    validated: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (tbl, col)
    pending: dict[str, tuple[str, str]] = field(default_factory=dict)

    def has_validated(self, table: str, column: str) -> bool:
        return (table, column) in self.validated.values()


@dataclass
class _Hit:
    rule: str
    statement: str
    target: str | None = None
    table: str | None = None
    note: str = ""


class _Walker:
    def __init__(self, info: RevisionInfo, state: LintState):
        self.info = info
        self.state = state
        self.hits: list[_Hit] = []
        self.in_tx = False
        self.lock_timeout = False
        self.lock_timeout_local = False
        self.ddl_seen = False
        self.created: set[str] = set()
        self.dropped: set[str] = set()
        self.not_valid_in_tx: set[str] = set()

    def hit(self, rule: str, stmt: str, target: str | None = None, table: str | None = None,
            note: str = "") -> None:
        if table and table in self.created and rule not in ("concurrently-in-transaction",):
            note = note or f"table {table} is created in this same revision; if it is still " \
                           "empty here, waive with that reason"
        self.hits.append(_Hit(rule, stmt, target, table, note))

    def walk(self, statements: list[str]) -> None:
        for stmt in statements:
            m = mask_literals(stmt)
            if re.search(r"\bALEMBIC_VERSION\b", m):
                continue
            self.statement(stmt, m)

    def statement(self, stmt: str, m: str) -> None:
        if re.match(r"^(BEGIN|START TRANSACTION)\b", m) and not m.startswith("BEGIN ATOMIC"):
            self.in_tx = True
            self.not_valid_in_tx.clear()
            return
        if re.match(r"^(COMMIT|END|ROLLBACK|ABORT)\b", m):
            self.in_tx = False
            self.not_valid_in_tx.clear()
            if self.lock_timeout_local:
                self.lock_timeout = self.lock_timeout_local = False
            return
        self._settings(stmt, m)
        is_ddl = bool(_DDL.match(m)) or (
            m.startswith("DO ") and re.search(r"\b(ALTER|CREATE|DROP)\s", stmt.upper())
        )
        if is_ddl and not self.ddl_seen:
            self.ddl_seen = True
            if not self.lock_timeout:
                self.hit("missing-lock-timeout", stmt)
        if m.startswith("CREATE TABLE"):
            t = re.match(rf"^CREATE TABLE (?:IF NOT EXISTS )?({_QNAME})", m)
            if t:
                self.created.add(unquote(t.group(1)))
        self._index(stmt, m)
        if m.startswith("ALTER TABLE"):
            self._alter_table(stmt, m)
        if m.startswith("DROP TABLE"):
            self._drop_table(stmt, m)
        self._dml(stmt, m)

    def _settings(self, stmt: str, m: str) -> None:
        s = re.match(r"^SET (SESSION |LOCAL )?LOCK_TIMEOUT\s*(=|TO)\s*(?P<v>.*)$", m)
        value = None
        if s:
            raw = re.search(r"(=|\bto\b)\s*(.*)$", stmt, re.IGNORECASE)
            value = raw.group(2).strip().strip("'\"") if raw else ""
            local = bool(s.group(1)) and "LOCAL" in s.group(1)
        elif re.search(r"set_config\s*\(\s*'lock_timeout'\s*,\s*'([^']*)'\s*,\s*(\w+)",
                       stmt, re.IGNORECASE):
            c = re.search(r"set_config\s*\(\s*'lock_timeout'\s*,\s*'([^']*)'\s*,\s*(\w+)",
                          stmt, re.IGNORECASE)
            assert c is not None
            value, local = c.group(1), c.group(2).lower() == "true"
        else:
            return
        off = value.upper() in ("0", "DEFAULT", "0MS", "0S", "")
        self.lock_timeout = not off
        self.lock_timeout_local = (not off) and local

    def _index(self, stmt: str, m: str) -> None:
        c = re.match(
            rf"^CREATE (UNIQUE )?INDEX (CONCURRENTLY )?(?:IF NOT EXISTS )?(?:({_NAME}) )?"
            rf"ON (?:ONLY )?({_QNAME})",
            m,
        )
        if c:
            table = unquote(c.group(4))
            name = unquote(c.group(3)) if c.group(3) else None
            if c.group(2) and self.in_tx:
                self.hit("concurrently-in-transaction", stmt, name, table)
            elif not c.group(2):
                self.hit("create-index-not-concurrently", stmt, name, table)
            return
        d = re.match(rf"^DROP INDEX (CONCURRENTLY )?(?:IF EXISTS )?({_QNAME})", m)
        if d:
            name = unquote(d.group(2))
            if d.group(1) and self.in_tx:
                self.hit("concurrently-in-transaction", stmt, name)
            elif not d.group(1):
                self.hit("drop-index-not-concurrently", stmt, name)

    def _alter_table(self, stmt: str, m: str) -> None:
        a = re.match(rf"^ALTER TABLE (?:IF EXISTS )?(?:ONLY )?({_QNAME}) (.*)$", m)
        if not a:
            return
        table, rest = unquote(a.group(1)), a.group(2)
        if rest.startswith("RENAME TO "):
            self.hit("rename-table", stmt, table, table)
            return
        r = re.match(rf"^RENAME (?:COLUMN )?(?!CONSTRAINT )({_NAME}) TO ", rest)
        if r:
            self.hit("rename-column", stmt, f"{table}.{unquote(r.group(1))}", table)
            return
        if rest.startswith("RENAME "):
            return
        for action in split_top_level(rest):
            self._action(stmt, table, action)

    def _action(self, stmt: str, table: str, act: str) -> None:
        con = re.match(
            rf"^ADD (?:CONSTRAINT ({_NAME}) )?"
            r"(FOREIGN KEY|CHECK|UNIQUE|PRIMARY KEY|EXCLUDE)\b(.*)$",
            act,
        )
        if con:
            name = unquote(con.group(1)) if con.group(1) else None
            kind, body = con.group(2), con.group(3)
            not_valid = bool(re.search(r"\bNOT VALID\b", body))
            if not_valid and name and self.in_tx:
                self.not_valid_in_tx.add(name)
            if kind == "FOREIGN KEY" and not not_valid:
                self.hit("add-foreign-key-without-not-valid", stmt, name or table, table)
            elif kind == "CHECK":
                if not not_valid:
                    self.hit("add-check-without-not-valid", stmt, name or table, table)
                nn = re.match(rf"^\s*\(\s*\(?\s*({_NAME})\s+IS NOT NULL\s*\)?\s*\)", body)
                if nn and name:
                    entry = (table, unquote(nn.group(1)))
                    (self.state.pending if not_valid else self.state.validated)[name] = entry
            elif kind in ("UNIQUE", "PRIMARY KEY") and "USING INDEX" not in body:
                self.hit("add-unique-without-index", stmt, name or table, table)
            return
        val = re.match(rf"^VALIDATE CONSTRAINT ({_NAME})", act)
        if val:
            name = unquote(val.group(1))
            if self.in_tx and name in self.not_valid_in_tx:
                self.hit("validate-in-same-transaction", stmt, name, table)
            if name in self.state.pending:
                self.state.validated[name] = self.state.pending.pop(name)
            return
        dcon = re.match(rf"^DROP CONSTRAINT (?:IF EXISTS )?({_NAME})", act)
        if dcon:
            name = unquote(dcon.group(1))
            self.state.validated.pop(name, None)
            self.state.pending.pop(name, None)
            return
        add = re.match(rf"^ADD (?:COLUMN )?(?:IF NOT EXISTS )?({_NAME}) (.*)$", act)
        if add:
            col, rest = unquote(add.group(1)), add.group(2)
            target = f"{table}.{col}"
            has_default = bool(re.search(r"\bDEFAULT\b", rest))
            generated = bool(re.search(r"\bGENERATED\b", rest))
            if re.search(r"\bNOT NULL\b", rest) and not has_default and not generated:
                self.hit("add-column-not-null-without-default", stmt, target, table)
            if (
                (has_default and _VOLATILE.search(rest.split("DEFAULT", 1)[1]))
                or re.match(r"^(SMALL|BIG)?SERIAL\b", rest)
                or re.search(r"\bAS IDENTITY\b", rest)
                or re.search(r"\bGENERATED ALWAYS AS\s*\(.*\)\s*STORED\b", rest)
            ):
                self.hit("add-column-rewrite", stmt, target, table)
            return
        alt = re.match(rf"^ALTER (?:COLUMN )?({_NAME}) (.*)$", act)
        if alt:
            col, rest = unquote(alt.group(1)), alt.group(2)
            target = f"{table}.{col}"
            if re.match(r"^(SET DATA )?TYPE\b", rest):
                self.hit("alter-column-type", stmt, target, table)
            elif rest.startswith("SET NOT NULL") and not self.state.has_validated(table, col):
                self.hit("set-not-null", stmt, target, table)
            return
        drop = re.match(
            rf"^DROP (?:COLUMN )?(?:IF EXISTS )?(?!CONSTRAINT\b|DEFAULT\b|NOT NULL\b|IDENTITY\b"
            rf"|EXPRESSION\b)({_NAME})", act,
        )
        if drop:
            item = f"{table}.{unquote(drop.group(1))}"
            self._dropped(stmt, item, table, "drop-column-outside-contract")

    def _drop_table(self, stmt: str, m: str) -> None:
        d = re.match(r"^DROP TABLE (?:IF EXISTS )?(.*?)(?: CASCADE| RESTRICT)?$", m)
        if not d:
            return
        for name in split_top_level(d.group(1)):
            table = unquote(name)
            self._dropped(stmt, table, table, "drop-table-outside-contract")

    def _dropped(self, stmt: str, item: str, table: str, outside_rule: str) -> None:
        self.dropped.add(item)
        if self.info.phase == "contract":
            if not any(covers(d, item) for d in self.info.drops):
                self.hit("undeclared-drop", stmt, item, table)
        elif table not in self.created:
            self.hit(outside_rule, stmt, item, table)

    def _dml(self, stmt: str, m: str) -> None:
        d = re.match(rf"^(?:WITH .*? )?(UPDATE|DELETE FROM) (?:ONLY )?({_QNAME})", m)
        if not d:
            return
        table = unquote(d.group(2))
        if not re.search(r"\bWHERE\b", m) and table not in self.created:
            self.hit("unbatched-dml", stmt, table, table)
        if self.info.phase == "expand" and table not in self.created:
            self.hit("data-change-in-expand", stmt, table, table)


def lint_sql(sql: str, info: RevisionInfo, state: LintState | None = None) -> list[Finding]:
    """Findings for one revision's rendered upgrade SQL (waivers applied)."""
    walker = _Walker(info, state or LintState())
    walker.walk(split_statements(sql))
    if info.phase == "contract":
        for item in info.drops:
            if not any(covers(item, d) or covers(d, item) for d in walker.dropped):
                walker.hits.append(_Hit("declared-drop-missing", "", item))
    findings = [_finding(info, h) for h in walker.hits]
    return apply_waivers(findings, info)


def _finding(info: RevisionInfo, hit: _Hit) -> Finding:
    rule = RULES[hit.rule]
    what = f" ({hit.target})" if hit.target else ""
    msg = f"revision {info.revision} ({info.path}): {rule.summary}{what}"
    if hit.statement:
        msg += f": {short(hit.statement)}"
    if hit.note:
        msg += f" [{hit.note}]"
    return Finding(
        check="lint", rule=rule.id, revision=info.revision, path=info.path, message=msg,
        statement=hit.statement or None, why=rule.why, fix=rule.fix, table=hit.table,
        target=hit.target,
        severity="warning" if rule.id == "declared-drop-missing" else "error",
    )


def apply_waivers(findings: list[Finding], info: RevisionInfo) -> list[Finding]:
    """Mark waived findings; add findings about the waivers themselves."""
    out = list(findings)
    for key, reason in info.waivers.items():
        rule_id, _, target = key.partition(":")
        if rule_id not in RULES or rule_id in _WAIVER_RULES:
            out.append(_waiver_finding(info, "unknown-waiver", key,
                                       f"waiver {key!r} names no lint rule"))
            continue
        if not isinstance(reason, str) or not reason.strip():
            out.append(_waiver_finding(info, "waiver-without-reason", key,
                                       f"waiver {key!r} gives no reason"))
            continue
        matched = [
            f for f in out
            if f.rule == rule_id and f.waived is None
            and (not target or (f.target or "").lower() == target.lower())
        ]
        for f in matched:
            f.waived = reason.strip()
        if not matched:
            out.append(_waiver_finding(info, "unused-waiver", key,
                                       f"waiver {key!r} silences no finding", "warning"))
    return out


def _waiver_finding(info: RevisionInfo, rule: str, key: str, text: str,
                    severity: str = "error") -> Finding:
    r = RULES[rule]
    return Finding(
        check="lint", rule=rule, revision=info.revision, path=info.path,
        message=f"revision {info.revision} ({info.path}): {text}.", why=r.why, fix=r.fix,
        target=key, severity=severity,  # type: ignore[arg-type]
    )


def lint_project(
    project: AlembicProject,
    plan: PhasePlan,
    *,
    only: set[str] | None = None,
    sql_out: dict[str, str] | None = None,
) -> dict[str, list[Finding]]:
    """Render and lint every revision (or those in ``only``), base first (the history must
    be linear). ``sql_out`` receives each rendered revision's SQL."""
    state = LintState()
    results: dict[str, list[Finding]] = {}
    for info in plan.revisions:
        if only is not None and info.revision not in only:
            # not judged, but what it validated still counts for later revisions
            try:
                lint_sql(render_upgrade(project, info.revision, info.down_revision), info,
                         state)
            except LabConfigError:
                pass
            continue
        try:
            sql = render_upgrade(project, info.revision, info.down_revision)
        except LabConfigError as exc:
            f = _finding(info, _Hit("offline-render-failed", ""))
            f.message = str(exc)
            results[info.revision] = apply_waivers([f], info)
            continue
        if sql_out is not None:
            sql_out[info.revision] = sql
        results[info.revision] = lint_sql(sql, info, state)
    return results
