"""`-p commit=...` values are JSON: every commit id a user can type arrives as that string."""

from __future__ import annotations

import json

import pytest

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.tasks.runtime.commit_param import commit_id


def as_prefect_cli_parses(typed: str):
    """What `prefect deployment run -p commit=<typed>` hands the flow (its own parser)."""
    from prefect.cli._utilities import load_json_key_values

    return load_json_key_values([f"commit={typed}"], "parameter")["commit"]


@pytest.mark.parametrize(
    "typed",
    [
        "1234567",  # an all-digit abbreviated SHA (or tag): JSON int
        "0123abc",  # leading zero: not JSON, stays a string
        "0123456",  # leading zero, digits only: not JSON either
        "deadbeefcafe",
        "a" * 40,
        "9" * 40,  # a 40-digit SHA: a big int, every digit kept
        "main",
        "v1.2.3",
        "HEAD~1",
        "origin/main",
    ],
)
def test_what_was_typed_is_what_arrives(typed):
    assert commit_id(as_prefect_cli_parses(typed)) == typed


@pytest.mark.parametrize("typed", ["1e10", "1234e56", "12.5", "1E5", "1e999"])
def test_a_float_is_refused_with_the_quoted_form(typed):
    value = as_prefect_cli_parses(typed)
    assert isinstance(value, float)
    with pytest.raises(ConfigError) as err:
        commit_id(value)
    message = str(err.value)
    assert "parsed as JSON" in message and "-p 'commit=\"" in message
    if typed == "1e10":
        assert "-p 'commit=\"1e10\"'" in message


@pytest.mark.parametrize("typed,literal", [("true", "true"), ("false", "false"), ("null", "null")])
def test_json_literals_are_refused(typed, literal):
    with pytest.raises(ConfigError, match=f"JSON literal {literal}"):
        commit_id(as_prefect_cli_parses(typed))


def test_a_quoted_value_is_taken_as_is():
    assert commit_id(as_prefect_cli_parses('"1e10"')) == "1e10"
    assert commit_id(json.loads('"1234567"')) == "1234567"


def test_empty_means_head_and_negative_numbers_are_not_commits():
    assert commit_id("") == "HEAD"
    with pytest.raises(ConfigError):
        commit_id(-5)
    with pytest.raises(ConfigError, match="must be a string"):
        commit_id(["abc"])


def test_the_flow_parameter_keeps_the_json_type_for_the_check():
    """pydantic must not coerce before commit_id sees the value (True would become 1)."""
    from pydantic import TypeAdapter

    from prefect_delivery.tasks.runtime.commit_param import CommitInput

    adapter = TypeAdapter(CommitInput)
    assert adapter.validate_python(True) is True
    assert adapter.validate_python(1234567) == 1234567
    assert isinstance(adapter.validate_python(1e10), float)
    assert adapter.validate_python("0123abc") == "0123abc"


def test_the_deployment_schema_accepts_what_the_cli_sends():
    """The server checks parameters against the flow's schema before the run exists."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import validate

    from prefect_delivery.flows.delivery import delivery

    schema = parameter_schema(delivery).model_dump()
    for typed in ("1234567", "1e10", "abc123", "true"):
        instance = {"service_dir": "svc", "commit": as_prefect_cli_parses(typed)}
        assert validate(instance, schema, raise_on_error=True) == []
