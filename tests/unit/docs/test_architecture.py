"""The layout DESIGN.md fixes, checked: one import namespace, dependencies one way, seams kept.

Each rule reads the source (ast), so a change that breaks it fails here, named.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FOLDERS = ("flows", "tasks", "blocks", "migrations_lab")
NS = "prefect_delivery"


def modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_every_package_folder_is_installed_under_the_namespace():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    mapping = config["tool"]["setuptools"]["package-dir"]
    assert mapping == {f"{NS}.{folder}": folder for folder in FOLDERS}
    folders = {
        f"{NS}." + ".".join(p.parent.relative_to(ROOT).parts)
        for folder in FOLDERS
        for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert folders - listed == set(), "add these to [tool.setuptools] packages"
    assert listed - folders == set(), "these are listed but have no modules"


def test_the_blocks_register_through_prefects_collection_entry_point():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["entry-points"]["prefect.collections"] == {NS: f"{NS}.blocks.catalog"}
    assert config["project"]["scripts"]["delivery"] == f"{NS}.flows.cli:main"
    from prefect.blocks.core import Block

    from prefect_delivery import blocks

    slugs = {getattr(blocks, name).get_block_type_slug() for name in blocks.__all__}
    # the slugs saved blocks were created with must not change
    assert {
        "delivery-environment",
        "haproxy-router",
        "haproxy-stats-source",
        "probe-source",
        "prometheus-source",
        "process-target",
        "docker-target",
        "delivery-artifact-store",
        "delivery-postgres-database",
    } <= slugs
    assert all(issubclass(getattr(blocks, name), Block) for name in blocks.__all__)


def test_nothing_imports_the_repository_folders_as_top_level_packages():
    bad = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules(*FOLDERS, "tests", "bench")
        for name in imported(path)
        if name.split(".")[0] in FOLDERS
    ]
    assert bad == [], f"import these as {NS}.<folder>: {bad}"


def test_dependencies_point_one_way():
    """flows -> tasks -> blocks; migrations_lab stands alone."""
    rules = {
        "blocks": (f"{NS}.tasks", f"{NS}.flows"),
        "tasks": (f"{NS}.flows",),
        "migrations_lab": (f"{NS}.tasks", f"{NS}.flows", f"{NS}.blocks"),
    }
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for folder, forbidden in rules.items()
        for path in modules(folder)
        for name in imported(path)
        if name.startswith(forbidden)
    ]
    assert bad == []


#: Outside blocks/routing/, "haproxy" may appear only as a configuration name: the block type
#: slugs and field names saved blocks carry, the router Block registered and configured.
ROUTER_CONFIGURATION = {
    "blocks/__init__.py": r"(blocks\.routing\.haproxy\b|HAProxyRouter)",
    "flows/cli/setup.py": r"(blocks\.routing\.haproxy import )?HAProxyRouter",
    "blocks/environment.py": r"haproxy_stats",
    "blocks/metrics/router_stats.py": r"haproxy-stats-source",
}


def test_only_blocks_routing_knows_the_router_is_haproxy():
    found = []
    for path in modules("flows", "tasks", "blocks", "migrations_lab"):
        rel = str(path.relative_to(ROOT))
        if rel.startswith("blocks/routing/"):
            continue
        allowed = ROUTER_CONFIGURATION.get(rel)
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "haproxy" not in line.lower():
                continue
            if (
                allowed
                and re.search(allowed, line)
                and not re.sub(allowed, "", line).lower().count("haproxy")
            ):
                continue
            found.append(f"{rel}:{number}: {line.strip()}")
    assert found == [], "speak of the Router (blocks/routing) instead:\n" + "\n".join(found)


def test_the_seams_are_protocols_with_their_implementations_beside_them():
    from prefect_delivery.blocks.metrics import MetricSource
    from prefect_delivery.blocks.metrics.probe import ProbeSource
    from prefect_delivery.blocks.metrics.prometheus import PrometheusSource
    from prefect_delivery.blocks.metrics.router_stats import RouterStatsSource
    from prefect_delivery.blocks.routing import Router, RouterBlock
    from prefect_delivery.blocks.targets import Target
    from prefect_delivery.blocks.targets.docker import DockerTarget
    from prefect_delivery.blocks.targets.process import ProcessTarget

    assert isinstance(RouterBlock(name="x", frontend_port=1), Router)
    for target in (ProcessTarget(), DockerTarget()):
        assert isinstance(target, Target)
    for source in (ProbeSource(), RouterStatsSource(), PrometheusSource(url="http://127.0.0.1:1")):
        assert isinstance(source, MetricSource)
