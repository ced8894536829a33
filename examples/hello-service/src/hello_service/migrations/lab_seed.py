"""Seed rows for migrations_lab's round trips, as the code of each release would write them.

Called before each revision is upgraded, with the revision the database is at. Rows before the
backfill (0003) have a name only; from the backfill on, name and first/last agree (the
backfill's split); after the contract only first/last exist.
"""

from sqlalchemy import inspect, text

NAMES = [("Margaret", "Hamilton"), ("Donald", "Ervin Knuth"), ("Plato", None), ("Ada", "")]


def _joined(first: str, last: str | None) -> str:
    return first if last is None else f"{first} {last}"


def seed(connection, revision):
    if revision is None or not inspect(connection).has_table("people"):
        return
    columns = {c["name"] for c in inspect(connection).get_columns("people")}
    for first, last in NAMES:
        first = f"{first}{revision}"
        if "first_name" not in columns or revision < "0003":
            connection.execute(text("INSERT INTO people (name) VALUES (:n)"),
                               {"n": _joined(first, last)})
        elif "name" in columns:
            connection.execute(
                text("INSERT INTO people (name, first_name, last_name) VALUES (:n, :f, :l)"),
                {"n": _joined(first, last), "f": first, "l": last},
            )
        else:
            connection.execute(text("INSERT INTO people (first_name, last_name) VALUES (:f, :l)"),
                               {"f": first, "l": last})
