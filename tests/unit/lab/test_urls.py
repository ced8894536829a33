"""URL handling: the password is masked or scrubbed wherever a URL might be shown."""

import pytest
from pydantic import SecretStr

from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.urls import mask, reveal, scrub


def test_mask_hides_the_password():
    url = "postgresql+psycopg://app:s3cr%40t@db.internal:5432/app"
    assert mask(url) == "postgresql+psycopg://app:***@db.internal:5432/app"
    assert mask(SecretStr(url)) == mask(url)
    assert "s3cr" not in mask("not a url s3cr")


def test_reveal_normalises_the_driver_and_accepts_secretstr():
    assert reveal(SecretStr("postgresql://u:p@h/d")).drivername == "postgresql+psycopg"
    assert reveal("postgres://u:p@h/d").drivername == "postgresql+psycopg"


def test_bad_urls_are_refused_without_echoing_them():
    with pytest.raises(LabConfigError) as exc:
        reveal("::::hunter2")
    assert "hunter2" not in str(exc.value)
    with pytest.raises(LabConfigError, match="only speaks PostgreSQL") as exc:
        reveal("mysql://u:hunter2@h/d")
    assert "hunter2" not in str(exc.value)


def test_scrub_removes_plain_and_encoded_password():
    url = "postgresql://u:p%40ss%2Fword@h/d"
    text = "failed for p@ss/word at postgresql://u:p%40ss%2Fword@h/d"
    out = scrub(text, url)
    assert "p@ss/word" not in out and "p%40ss%2Fword" not in out
    assert out.count("***") == 2
