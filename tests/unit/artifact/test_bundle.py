"""The bundle (blocks/bundle.py) and its lock (tasks/lock.py): pure parts, no index."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from prefect_delivery.blocks.bundle import Bundle, PinnedWheel, WheelPool, problems, sha256_hex
from prefect_delivery.tasks.checks import checks_argv
from prefect_delivery.tasks.lock import locked_blocks, pins, requirement_names, unhashed

LOCKED = """\
anyio==4.6.0 \\
    --hash=sha256:{a} \\
    --hash=sha256:{b}
    # via starlette
Starlette==0.41.0 \\
    --hash=sha256:{c}
tomli==2.0.1 ; python_version < "3.11" \\
    --hash=sha256:{d}
""".format(a="a" * 64, b="b" * 64, c="c" * 64, d="d" * 64)


def wheel(folder: Path, name: str, data: bytes) -> PinnedWheel:
    path = folder / name
    path.write_bytes(data)
    return PinnedWheel(file=name, sha256=sha256_hex(path))


def bundle(tmp_path: Path, **change) -> Bundle:
    own = wheel(tmp_path, "svc-1.0.0+gabc-py3-none-any.whl", b"service")
    dep = wheel(tmp_path, "dep-2.0-py3-none-any.whl", b"dependency")
    fields = dict(
        service="svc",
        version="1.0.0",
        commit="a" * 40,
        python="3.11",
        wheel=own,
        runtime=[dep],
        requirements="dep==2.0 --hash=sha256:" + dep.sha256,
        lock_source="resolved at build",
    )
    return Bundle(**{**fields, **change})


def test_the_digest_covers_every_wheel_and_the_lock(tmp_path):
    base = bundle(tmp_path)
    assert base.digest == bundle(tmp_path).digest  # the same content, the same digest
    other_dep = PinnedWheel(file="dep-2.0-py3-none-any.whl", sha256="0" * 64)
    assert bundle(tmp_path, runtime=[other_dep]).digest != base.digest
    assert bundle(tmp_path, requirements="dep==2.1").digest != base.digest
    assert bundle(tmp_path, python="3.12").digest != base.digest


def test_problems_name_a_missing_or_swapped_wheel(tmp_path):
    b = bundle(tmp_path)
    assert problems(b, tmp_path) == []
    (tmp_path / "dep-2.0-py3-none-any.whl").write_bytes(b"another dependency")
    assert problems(b, tmp_path) == [
        "dep-2.0-py3-none-any.whl is not the file that was built (sha256 differs)"
    ]
    (tmp_path / "svc-1.0.0+gabc-py3-none-any.whl").unlink()
    assert "svc-1.0.0+gabc-py3-none-any.whl is missing" in problems(b, tmp_path)


def test_the_pool_keeps_a_wheel_once_under_its_sha256(tmp_path):
    pool = WheelPool(tmp_path / "store")
    source = tmp_path / "dep-2.0-py3-none-any.whl"
    source.write_bytes(b"dependency")
    first, again = pool.add(source), pool.add(source)
    assert first == again and pool.find(first.sha256) == pool.path(first)
    assert pool.find("f" * 64) is None
    pool.link_into([first], tmp_path / "bundle")
    assert (tmp_path / "bundle" / source.name).read_bytes() == b"dependency"


def test_a_locked_text_is_read_as_requirements_with_their_hashes():
    blocks = locked_blocks(LOCKED)  # tomli's marker is false on 3.11+
    assert blocks == [("anyio==4.6.0", {"a" * 64, "b" * 64}), ("Starlette==0.41.0", {"c" * 64})]
    assert requirement_names(LOCKED) == {"anyio", "starlette", "tomli"}
    assert pins(LOCKED).splitlines() == ["anyio==4.6.0", "Starlette==0.41.0", "tomli==2.0.1"]


def test_requirements_without_hashes_are_named():
    assert unhashed(LOCKED) == []
    assert unhashed("flask==3.0.0\nanyio==4.6.0 --hash=sha256:" + "a" * 64 + "\n") == [
        "flask==3.0.0"
    ]


@pytest.mark.parametrize(
    "command, expected",
    [
        (["pytest", "checks"], ["{bin}/python", "-m", "pytest", "checks"]),
        (["python", "-m", "checks"], ["{bin}/python", "-m", "checks"]),
        (["smoke", "--fast"], ["{bin}/smoke", "--fast"]),
        (["curl", "-f", "x"], ["curl", "-f", "x"]),
    ],
)
def test_checks_run_with_the_release_test_environment(tmp_path, command, expected):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    for script in ("python", "smoke"):
        (venv / "bin" / script).write_text("")
    bin_dir = str(venv / "bin")
    assert checks_argv(command, venv) == [part.format(bin=bin_dir) for part in expected]


def test_a_requirements_file_without_hashes_is_refused_before_anything_resolves(tmp_path):
    from prefect_delivery.blocks.errors import ConfigError
    from prefect_delivery.tasks.lock import locked_set
    from prefect_delivery.tasks.manifest import parse_manifest

    (tmp_path / "pyproject.toml").write_text('[project]\nname = "svc"\nversion = "1.0"\n')
    (tmp_path / "requirements.lock").write_text("flask==3.0.0\n")
    manifest = parse_manifest(
        '[service]\nname = "svc"\n[build]\nrequirements = "requirements.lock"\n'
        '[run]\ncommand = ["python", "-m", "svc", "{port}"]\n'
    )
    with pytest.raises(ConfigError) as info:
        locked_set(tmp_path, manifest, tmp_path / "store")
    message = str(info.value)
    assert message.startswith("svc delivery.toml [build].requirements: requirements.lock has ")
    assert (
        "without --hash (flask==3.0.0)" in message and "uv pip compile --generate-hashes" in message
    )
    assert not (tmp_path / "store").exists()


def test_demo_refuses_a_service_folder_without_a_manifest_before_touching_anything(
    capsys, tmp_path
):
    from prefect_delivery.flows.cli import EXIT_BAD_INPUT, main

    state = tmp_path / "state"
    code = main(["demo", "--service", str(tmp_path / "nothing"), "--state-dir", str(state)])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith(f"delivery: --service: {tmp_path / 'nothing'} has no delivery.toml.")
    assert "Fix:" in err and "examples/httpbin-service" in err
    assert not state.exists()


def test_an_installer_is_given_the_bundle_files_own_hashes(tmp_path):
    b = bundle(tmp_path)
    dep = b.runtime[0]
    assert b.install_requirements() == f"dep==2.0 --hash=sha256:{dep.sha256}\n"
    assert bundle(tmp_path, runtime=[]).install_requirements() == ""


def test_a_cached_wheel_whose_bytes_changed_is_fetched_again(tmp_path, monkeypatch):
    """A file in the pool or the machine's cache is used only while its bytes still have the
    hash it is kept under; a tampered one is fetched again (pip, hashes required)."""
    from prefect_delivery.tasks import lock

    good = b"the real wheel"
    sha = hashlib.sha256(good).hexdigest()
    name = "six-1.17.0-py2.py3-none-any.whl"
    cache = tmp_path / "cache"
    monkeypatch.setenv("DELIVERY_WHEEL_CACHE", str(cache))
    (cache / "wheels" / sha).mkdir(parents=True)
    (cache / "wheels" / sha / name).write_bytes(b"tampered")
    fetched = []

    def pip_wheel(argv, what, cwd=None, stdin=None):
        out = Path(argv[argv.index("--wheel-dir") + 1])
        out.mkdir(parents=True)
        (out / name).write_bytes(good)
        fetched.append(what)
        return ""

    monkeypatch.setattr(lock, "_run", pip_wheel)
    pool = WheelPool(tmp_path / "store")
    wheels = lock.fetch_wheels(f"six==1.17.0 \\\n    --hash=sha256:{sha}\n", pool)
    assert fetched == ["fetching the locked wheels"]
    assert wheels == [PinnedWheel(file=name, sha256=sha)]
    assert pool.path(wheels[0]).read_bytes() == good
    assert (cache / "wheels" / sha / name).read_bytes() == good  # the cache is mended too
    # the next build finds it in the pool and fetches nothing
    fetched.clear()
    assert lock.fetch_wheels(f"six==1.17.0 --hash=sha256:{sha}\n", pool) == wheels
    assert fetched == []


def test_a_uv_lock_is_exported_as_it_is_never_resolved_again(monkeypatch, tmp_path):
    """A service with a uv.lock: both sets come from `uv export --frozen` (offline), markers
    kept; the test set is what the lock's extras add; nothing is resolved."""
    import shutil

    from prefect_delivery.tasks import lock
    from prefect_delivery.tasks.manifest import parse_manifest

    tree = tmp_path / "svc"
    shutil.copytree(Path(__file__).parents[2] / "fixtures" / "uvlock-service", tree)

    def no_resolution(*args, **kwargs):
        raise AssertionError("a uv.lock must not be resolved again")

    monkeypatch.setattr(lock, "compile_requirements", no_resolution)
    manifest = parse_manifest(
        '[service]\nname = "uvl-svc"\n[run]\ncommand = ["python", "-m", "uvl_svc", "{port}"]\n'
    )
    locked = lock.locked_set(tree, manifest, tmp_path / "store")
    assert locked.source == "uv.lock"
    assert lock.requirement_names(locked.requirements) == {"tabulate"}
    assert "tabulate==0.9.0" in locked.requirements and "--hash=sha256:" in locked.requirements
    assert {"pytest", "pluggy", "iniconfig"} <= lock.requirement_names(locked.test_requirements)
    assert "tabulate" not in lock.requirement_names(locked.test_requirements)
    # a platform's dependency keeps its marker (and is left out where it is false)
    assert "colorama==0.4.6 ; sys_platform == 'win32'" in locked.test_requirements
    assert "colorama" not in {
        r.split("==")[0] for r, _ in lock.locked_blocks(locked.test_requirements)
    }
