"""Snapshots of a database (schema by SQLAlchemy inspection, data by counts and checksums)
and the differences between two of them.

Schema: per table its columns (type, nullability, default), primary key, foreign keys,
indexes, unique and check constraints; plus views and enum types. Column *order* is ignored:
PostgreSQL cannot put a re-added column back in its old position.

Data: per table the row count and a checksum over all rows (column order independent). For
tables of up to ``ROW_DETAIL_LIMIT`` rows the snapshot also keeps a hash of every value, keyed
by primary key, so a difference can say which column lost, changed or gained values.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

ROW_DETAIL_LIMIT = 10_000

Kind = Literal[
    "table-missing", "table-added", "schema", "rows-removed", "rows-added", "count",
    "lost", "filled", "changed", "checksum",
]


class TableSchema(BaseModel):
    columns: dict[str, str]
    primary_key: list[str]
    foreign_keys: list[str]
    indexes: list[str]
    unique_constraints: list[str]
    check_constraints: list[str]


class TableData(BaseModel):
    count: int
    checksum: str
    columns: list[str]
    column_checksums: dict[str, str]
    #: primary key text -> column -> md5 of the value (None for NULL); only for small tables
    rows: dict[str, dict[str, str | None]] | None = None


class Snapshot(BaseModel):
    tables: dict[str, TableSchema] = Field(default_factory=dict)
    views: dict[str, str] = Field(default_factory=dict)
    enums: dict[str, list[str]] = Field(default_factory=dict)
    data: dict[str, TableData] = Field(default_factory=dict)


class Difference(BaseModel):
    table: str
    column: str | None = None
    kind: Kind
    detail: str

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        return f"{where}: {self.detail}"


def take(conn: Connection, *, exclude: tuple[str, ...] = ("alembic_version",)) -> Snapshot:
    """Snapshot the default schema of the connection's database."""
    insp = inspect(conn)
    snap = Snapshot()
    multi = _Multi(insp)  # one catalog query per kind for all tables, not one per table
    for table in sorted(insp.get_table_names()):
        if table in exclude:
            continue
        snap.tables[table] = _table_schema(multi, table)
        snap.data[table] = _table_data(conn, table, snap.tables[table])
    for view in sorted(insp.get_view_names()):
        snap.views[view] = " ".join((insp.get_view_definition(view) or "").split())
    get_enums = getattr(insp, "get_enums", None)
    if get_enums:
        for enum in get_enums():
            snap.enums[enum["name"]] = list(enum["labels"])
    return snap


class _Multi:
    """The inspector's per-table reflection answered from SQLAlchemy 2's get_multi_* calls."""

    _KINDS = ("columns", "pk_constraint", "foreign_keys", "indexes", "unique_constraints",
              "check_constraints")

    def __init__(self, insp: Any):
        self.insp = insp
        self.cache: dict[str, dict[Any, Any]] = {}

    def __getattr__(self, name: str) -> Any:
        kind = name.removeprefix("get_")
        if kind not in self._KINDS:
            raise AttributeError(name)

        def per_table(table: str) -> Any:
            if kind not in self.cache:
                self.cache[kind] = dict(getattr(self.insp, f"get_multi_{kind}")())
            return self.cache[kind][(None, table)]

        return per_table


def _table_schema(insp: Any, table: str) -> TableSchema:
    columns = {}
    for col in insp.get_columns(table):
        default = col.get("default")
        ident = " identity" if col.get("identity") else ""
        columns[col["name"]] = (
            f"{col['type']}{'' if col['nullable'] else ' NOT NULL'}"
            f"{f' DEFAULT {default}' if default is not None else ''}{ident}"
        )
    pk = insp.get_pk_constraint(table).get("constrained_columns") or []
    fks = sorted(
        f"{fk.get('name')}: ({', '.join(fk['constrained_columns'])}) -> "
        f"{fk['referred_table']}({', '.join(fk['referred_columns'])})"
        for fk in insp.get_foreign_keys(table)
    )
    idx = sorted(
        f"{i['name']}: {'unique ' if i.get('unique') else ''}"
        f"({', '.join(str(c) for c in i.get('column_names') or [])})"
        for i in insp.get_indexes(table)
    )
    uqs = sorted(
        f"{u.get('name')}: ({', '.join(u['column_names'])})"
        for u in insp.get_unique_constraints(table)
    )
    checks = sorted(f"{c.get('name')}: {c['sqltext']}" for c in insp.get_check_constraints(table))
    return TableSchema(columns=columns, primary_key=list(pk), foreign_keys=fks, indexes=idx,
                       unique_constraints=uqs, check_constraints=checks)


def _table_data(conn: Connection, table: str, schema: TableSchema) -> TableData:
    q = conn.dialect.identifier_preparer.quote
    cols = sorted(schema.columns)
    qt = q(table)
    count = int(conn.execute(text(f"SELECT count(*) FROM {qt}")).scalar() or 0)
    if not cols:
        return TableData(count=count, checksum="", columns=[], column_checksums={})
    if count <= ROW_DETAIL_LIMIT:
        key_cols = schema.primary_key or cols
        key_expr = "ROW(" + ", ".join(q(c) for c in key_cols) + ")::text"
        hashes = ", ".join(f"md5({q(c)}::text)" for c in cols)
        result = conn.execute(text(f"SELECT {key_expr}, {hashes} FROM {qt}")).all()
        rows: dict[str, dict[str, str | None]] = {}
        for n, r in enumerate(sorted(result, key=lambda r: (r[0], [x or "" for x in r[1:]]))):
            key = r[0] if schema.primary_key else f"{r[0]}#{n}"
            rows[key] = dict(zip(cols, r[1:], strict=True))
        col_sums = {
            c: _digest(sorted(row[c] or "-" for row in rows.values())) for c in cols
        }
        checksum = _digest(sorted(_digest([row[c] or "-" for c in cols]) for row in rows.values()))
        return TableData(count=count, checksum=checksum, columns=cols,
                         column_checksums=col_sums, rows=rows if schema.primary_key else None)
    row_expr = "md5(ROW(" + ", ".join(q(c) for c in cols) + ")::text)"
    checksum = conn.execute(
        text(f"SELECT md5(string_agg(h, '' ORDER BY h)) FROM (SELECT {row_expr} h FROM {qt}) s")
    ).scalar() or ""
    col_sums = {}
    for c in cols:
        h = f"coalesce(md5({q(c)}::text), '-')"
        col_sums[c] = conn.execute(
            text(f"SELECT md5(string_agg({h}, '' ORDER BY {h})) FROM {qt}")
        ).scalar() or ""
    return TableData(count=count, checksum=checksum, columns=cols, column_checksums=col_sums)


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


# -- differences ---------------------------------------------------------------------------


def diff_schema(before: Snapshot, after: Snapshot) -> list[Difference]:
    out: list[Difference] = []
    for t in sorted(set(before.tables) - set(after.tables)):
        out.append(Difference(table=t, kind="table-missing", detail="table is missing"))
    for t in sorted(set(after.tables) - set(before.tables)):
        out.append(Difference(table=t, kind="table-added", detail="table was not there before"))
    for t in sorted(set(before.tables) & set(after.tables)):
        a, b = before.tables[t], after.tables[t]
        for c in sorted(set(a.columns) | set(b.columns)):
            if c not in b.columns:
                out.append(Difference(table=t, column=c, kind="schema",
                                      detail=f"column missing (was {a.columns[c]})"))
            elif c not in a.columns:
                out.append(Difference(table=t, column=c, kind="schema",
                                      detail=f"column not there before ({b.columns[c]})"))
            elif a.columns[c] != b.columns[c]:
                out.append(Difference(table=t, column=c, kind="schema",
                                      detail=f"was {a.columns[c]}, now {b.columns[c]}"))
        for field in ("primary_key", "foreign_keys", "indexes", "unique_constraints",
                      "check_constraints"):
            x, y = getattr(a, field), getattr(b, field)
            if x != y:
                gone = [i for i in x if i not in y]
                new = [i for i in y if i not in x]
                out.append(Difference(
                    table=t, kind="schema",
                    detail=f"{field.replace('_', ' ')} differ: missing {gone or '-'}, "
                           f"extra {new or '-'}",
                ))
    for kind, a_map, b_map in (("view", before.views, after.views),
                               ("enum", before.enums, after.enums)):
        for name in sorted(set(a_map) | set(b_map)):
            if a_map.get(name) != b_map.get(name):
                state = ("missing" if name not in b_map else
                         "not there before" if name not in a_map else "differs")
                out.append(Difference(table=name, kind="schema", detail=f"{kind} {state}"))
    return out


def diff_data(before: Snapshot, after: Snapshot) -> list[Difference]:
    """Data differences on tables present in both snapshots."""
    out: list[Difference] = []
    for t in sorted(set(before.data) & set(after.data)):
        a, b = before.data[t], after.data[t]
        common = sorted(set(a.columns) & set(b.columns))
        for c in sorted(set(a.columns) - set(b.columns)):
            if a.count and a.column_checksums.get(c) != _digest(["-"] * a.count):
                out.append(Difference(table=t, column=c, kind="lost",
                                      detail=f"column and its values in {a.count} rows are gone"))
        if a.rows is not None and b.rows is not None:
            out.extend(_row_diff(t, a.rows, b.rows, common))
            continue
        if a.count != b.count:
            out.append(Difference(table=t, kind="count",
                                  detail=f"{a.count} rows before, {b.count} after"))
        for c in common:
            if a.column_checksums.get(c) != b.column_checksums.get(c):
                out.append(Difference(table=t, column=c, kind="checksum",
                                      detail="values differ (checksum)"))
    return out


def _row_diff(table: str, a: dict[str, dict[str, str | None]],
              b: dict[str, dict[str, str | None]], cols: list[str]) -> list[Difference]:
    out: list[Difference] = []
    removed = [k for k in a if k not in b]
    added = [k for k in b if k not in a]
    if removed:
        out.append(Difference(table=table, kind="rows-removed",
                              detail=f"{len(removed)} rows are gone (keys {removed[:3]})"))
    if added:
        out.append(Difference(table=table, kind="rows-added",
                              detail=f"{len(added)} rows were not there (keys {added[:3]})"))
    both = [k for k in a if k in b]
    for c in cols:
        lost = sum(1 for k in both if a[k][c] is not None and b[k][c] is None)
        filled = sum(1 for k in both if a[k][c] is None and b[k][c] is not None)
        changed = sum(1 for k in both if None not in (a[k][c], b[k][c]) and a[k][c] != b[k][c])
        if lost:
            out.append(Difference(table=table, column=c, kind="lost",
                                  detail=f"{lost} of {len(both)} rows had a value, now NULL"))
        if changed:
            out.append(Difference(table=table, column=c, kind="changed",
                                  detail=f"{changed} of {len(both)} rows hold another value"))
        if filled:
            out.append(Difference(table=table, column=c, kind="filled",
                                  detail=f"{filled} of {len(both)} rows were NULL, now hold "
                                         "a value"))
    return out
