"""Database URLs: normalise to the psycopg 3 driver, unwrap ``SecretStr``, mask for display.

The password never leaves this module in readable form except through :func:`reveal`, which
is only used to open connections. Use :func:`mask` for anything shown to a human and
:func:`scrub` on text that might echo a URL back (driver errors, test output).
"""

from __future__ import annotations

from urllib.parse import quote, quote_plus

from pydantic import SecretStr
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from prefect_delivery.migrations_lab.errors import LabConfigError

UrlLike = str | SecretStr | URL

_DRIVER = "postgresql+psycopg"


def reveal(url: UrlLike) -> URL:
    """Parse ``url`` into a SQLAlchemy URL using the psycopg 3 driver."""
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    try:
        parsed = raw if isinstance(raw, URL) else make_url(raw)
    except ArgumentError:
        raise LabConfigError(
            "database URL",
            "is not a valid URL (value not shown, it may hold a password).",
            "use postgresql+psycopg://USER:PASSWORD@HOST:PORT/DBNAME",
        ) from None
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername=_DRIVER)
    if not parsed.drivername.startswith("postgresql"):
        raise LabConfigError(
            f"database URL {mask(parsed)}",
            f"uses driver {parsed.drivername!r}; the lab only speaks PostgreSQL.",
            "use a postgresql+psycopg:// URL",
        )
    return parsed


def mask(url: UrlLike) -> str:
    """The URL as text with the password replaced by ``***``."""
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    try:
        parsed = raw if isinstance(raw, URL) else make_url(raw)
    except ArgumentError:
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def password_of(url: UrlLike) -> str | None:
    try:
        pw = reveal(url).password
    except LabConfigError:
        return None
    return str(pw) if pw else None


def scrub(text: str, url: UrlLike | None) -> str:
    """Remove the password of ``url`` (plain and URL-encoded forms) from ``text``."""
    if url is None:
        return text
    pw = password_of(url)
    if not pw:
        return text
    for form in {pw, quote(pw, safe=""), quote_plus(pw)}:
        if form:
            text = text.replace(form, "***")
    return text


def with_database(url: UrlLike, database: str) -> URL:
    """The same server and credentials, another database."""
    return reveal(url).set(database=database)
