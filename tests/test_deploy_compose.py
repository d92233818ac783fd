"""docker-compose.yml and its load test, checked without a Docker engine.

The file is validated against the Compose specification's JSON schema that
check-jsonschema ships (vendored from the compose-spec project), and the
load profile's locustfile runs headless against a real service on loopback.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from service_helpers import ROOT, run_server

COMPOSE_FILE = ROOT / "docker-compose.yml"
LOCUST_CONFIG = ROOT / "deploy" / "load" / "locust.conf"
LOCUSTFILE = ROOT / "load_tests" / "locustfile.py"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
LOAD_RUN_TIME = "4s"
LOAD_TIMEOUT_S = 60.0


def tool(name: str) -> str:
    """Return a console script of the test extra, or fail saying how to get it."""
    path = shutil.which(name, path=Path(sys.executable).parent)
    if path is None:
        pytest.fail(
            f"{name} not found next to {sys.executable}: install the test extra"
        )
    return path


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def parse_volume(volume: str) -> tuple[str, str, str]:
    """Split a short-syntax volume into source, target and mode ("rw" if none).

    The split starts from the right, because a source such as
    `${DIR:-./models}` contains a colon.
    """
    mode = "rw"
    if volume.endswith((":ro", ":rw")):
        volume, _, mode = volume.rpartition(":")
    source, _, target = volume.rpartition(":")
    return source, target, mode


def volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """Return each mount's target, keyed by its source."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, _ = parse_volume(volume)
        mounts[source] = target
    return mounts


def test_compose_file_matches_compose_specification():
    checker = tool("check-jsonschema")

    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_all_have_healthchecks(services):
    without = [
        name
        for name, service in services.items()
        if "healthcheck" not in service and "load" not in service.get("profiles", [])
    ]

    assert without == []


def test_compose_dependencies_wait_for_health(services):
    conditions = {
        f"{name} -> {dependency}": settings["condition"]
        for name, service in services.items()
        for dependency, settings in service.get("depends_on", {}).items()
    }

    assert set(conditions.values()) == {"service_healthy"}, conditions


def test_compose_ports_bind_to_loopback(services):
    ports = [port for service in services.values() for port in service.get("ports", [])]

    for port in ports:
        assert port.startswith("127.0.0.1:"), port


def test_compose_load_generator_needs_profile(services):
    profiles = services["loadgen"].get("profiles")

    assert profiles == ["load"]


def test_compose_load_generator_mounts_locustfile(services):
    mounts = volume_targets(services["loadgen"])
    config = dict(
        line.split(" = ", 1)
        for line in LOCUST_CONFIG.read_text(encoding="utf-8").splitlines()
        if " = " in line and not line.startswith("#")
    )

    assert Path(config["locustfile"]).parent == Path(mounts["./load_tests"])


def test_compose_model_repository_mounted_read_only(services):
    volumes = [parse_volume(v) for v in services["watchtime"]["volumes"]]

    modes = [mode for _, target, mode in volumes if target == "/models"]
    assert modes == ["ro"]


def test_compose_admin_token_comes_from_shell(services):
    environment = services["watchtime"]["environment"]

    assert environment["WATCHTIME_ADMIN_TOKEN"] is None


def test_compose_grafana_mounts_provisioning(services):
    mounts = volume_targets(services["grafana"])

    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_compose_grafana_loads_mounted_dashboards(services):
    mounts = volume_targets(services["grafana"])
    providers = yaml.safe_load(
        (GRAFANA_PROVISIONING / "dashboards" / "watchtime.yml").read_text("utf-8")
    )["providers"]

    paths = {provider["options"]["path"] for provider in providers}
    assert paths == {mounts["./deploy/grafana/dashboards"]}


def test_compose_grafana_datasource_reaches_prometheus(services):
    datasources = yaml.safe_load(
        (GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text("utf-8")
    )["datasources"]

    (url,) = {source["url"] for source in datasources}
    assert url == "http://prometheus:9090"
    assert "prometheus" in services


def test_load_profile_runs_against_service(tmp_path):
    locust = tool("locust")
    stats_prefix = tmp_path / "load"

    with run_server(ROOT / "models", tmp_path / "server.log") as server:
        result = subprocess.run(
            [
                locust,
                f"--config={LOCUST_CONFIG}",
                f"--locustfile={LOCUSTFILE}",
                f"--host={server.base_url}",
                f"--run-time={LOAD_RUN_TIME}",
                "--users=4",
                "--spawn-rate=4",
                f"--csv={stats_prefix}",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=LOAD_TIMEOUT_S,
        )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    stats = Path(f"{stats_prefix}_stats.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(stats.splitlines()))
    rank = next(row for row in rows if row["Name"] == "/v1/rank")
    assert int(rank["Request Count"]) > 0
    assert int(rank["Failure Count"]) == 0
