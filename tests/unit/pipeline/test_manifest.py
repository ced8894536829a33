from pathlib import Path

import pytest

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.tasks.manifest import load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[3]
GOOD = """
[service]
name = "svc"
[run]
command = ["python", "-m", "svc", "--port", "{port}"]
[[smoke]]
path = "/api"
json_keys = ["a"]
"""


def test_example_manifest_is_valid():
    manifest = load_manifest(ROOT / "examples" / "hello-service")
    assert manifest.service.name == "hello-service"
    spec = manifest.run_spec()
    assert spec.health_path == "/healthz"
    assert [c.path for c in spec.smoke] == [
        "/api/greeting?name=delivery",
        "/api/stats",
        "/api/people",
    ]


def test_defaults_fill_in():
    manifest = parse_manifest(GOOD)
    assert manifest.build.kind == "wheel"
    assert manifest.test.paths == ["tests"]
    assert manifest.run.health_path == "/healthz"


@pytest.mark.parametrize(
    "change,field,value_or_hint",
    [
        (('name = "svc"', 'name = "Bad Name"'), "service.name", "'Bad Name'"),
        (('"{port}"]', '"8000"]'), "run.command", "{port}"),
        (("[run]", '[run]\nhealth_path = "healthz"'), "run.health_path", "'healthz'"),
        (("[run]", "[run]\nstartup_timeout_s = -1"), "run.startup_timeout_s", "-1"),
        (('path = "/api"', 'path = "api"'), "smoke[0].path", "'api'"),
        (("[run]", '[build]\nkind = "zip"\n[run]'), "build.kind", "'zip'"),
        (("[run]", '[build]\nimage_tag = "latest"\n[run]'), "build.image_tag", "latest"),
        (("[run]", "[run]\nbogus = 1"), "run.bogus", "not a known setting"),
    ],
)
def test_errors_name_file_field_and_value(change, field, value_or_hint):
    text = GOOD.replace(*change)
    with pytest.raises(ConfigError) as info:
        parse_manifest(text, "svc/delivery.toml")
    message = str(info.value)
    assert "svc/delivery.toml" in message
    assert field in message
    assert value_or_hint in message


def test_missing_section_is_reported():
    with pytest.raises(ConfigError, match="run is missing"):
        parse_manifest('[service]\nname = "svc"\n', "x/delivery.toml")


def test_bad_toml_is_reported_with_location():
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_manifest("[service\nname=", "x/delivery.toml")


def test_missing_manifest_file(tmp_path):
    with pytest.raises(ConfigError, match="delivery.toml.*not found"):
        load_manifest(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        load_manifest(tmp_path / "nope")
