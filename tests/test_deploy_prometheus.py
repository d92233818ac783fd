"""Prometheus configuration and the Grafana dashboard, against real servers.

A real service and a real Prometheus server (Debian's prometheus package,
which scripts/install-test-tools.sh installs) run on loopback ports. The
dashboard's PromQL expressions are evaluated through Prometheus' HTTP API,
so a syntax error or an unknown function fails here rather than in Grafana.
A query of a metric that the service does not export yet still succeeds,
with an empty result.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service_helpers import (
    LOOPBACK,
    ROOT,
    RunningServer,
    find_free_port,
    run_server,
    stop_process,
)

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "watchtime.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources"
INSTALL_HINT = (
    "not found: run scripts/install-test-tools.sh as root, or install Debian's "
    "prometheus package (apt-get install --no-install-recommends prometheus)"
)
STARTUP_TIMEOUT_S = 30.0
SCRAPE_INTERVAL = "1s"
SCRAPES_BEFORE_QUERIES = 3
GRAFANA_VARIABLES = {
    # Grafana replaces these before it sends a query; the values are what it
    # would pick for a short time range with a 1 s scrape interval.
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "5m",
}
DASHBOARD_METRICS = (
    "watchtime_requests_total",
    "watchtime_request_duration_seconds",
    "watchtime_stage_duration_seconds",
    "watchtime_candidates_per_request",
    "watchtime_batch_rows",
    "watchtime_predicted_watch_time_seconds",
    "watchtime_invalid_inputs_total",
    "watchtime_rejected_requests_total",
    "watchtime_model_info",
    "watchtime_model_reloads_total",
    "watchtime_onnxruntime_threads",
)


def require_program(name: str) -> str:
    """Return the path of a program on PATH, or fail saying how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} {INSTALL_HINT}")
    return path


def dashboard_targets() -> dict[str, dict[str, Any]]:
    """Return every query target of the dashboard by panel title and refId."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return {
        f"{panel['title']} {target['refId']}": target
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }


def dashboard_expressions() -> dict[str, str]:
    """Return the dashboard's PromQL expressions as Grafana would send them."""
    expressions = {}
    for name, target in dashboard_targets().items():
        expression = target["expr"]
        for variable, value in GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, value)
        expressions[name] = expression
    return expressions


def scrape_config(target: str) -> dict[str, Any]:
    """Return the repository's Prometheus configuration aimed at one target."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = SCRAPE_INTERVAL
    config["global"]["scrape_timeout"] = SCRAPE_INTERVAL
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [target]}]
    return config


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Return the service serving the bundled model, after a few requests."""
    log_path = tmp_path_factory.mktemp("service") / "server.log"
    with run_server(ROOT / "models", log_path) as running:
        send_sample_requests(running.base_url)
        yield running


def send_sample_requests(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        client.get("/v1/model").raise_for_status()
        valid = {
            "candidates": [
                {"id": f"v{number}", "features": {"video_duration_s": 60.0 * number}}
                for number in range(1, 6)
            ]
        }
        client.post("/v1/rank", json=valid).raise_for_status()
        # An invalid request, so that the error counters have samples too.
        client.post("/v1/rank", json={"candidates": "not a list"})


@pytest.fixture(scope="module")
def prometheus(
    service: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Return the URL of a Prometheus server that scrapes the service."""
    binary = require_program("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    config_path = workdir / "prometheus.yml"
    target = service.base_url.removeprefix("http://")
    config_path.write_text(yaml.safe_dump(scrape_config(target)), encoding="utf-8")
    address = f"{LOOPBACK}:{find_free_port()}"
    log_path = workdir / "prometheus.log"
    command = [
        binary,
        f"--config.file={config_path}",
        f"--web.listen-address={address}",
        f"--storage.tsdb.path={workdir / 'data'}",
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT
        )
    url = f"http://{address}"
    try:
        wait_for_scrapes(url, process, log_path)
        yield url
    finally:
        stop_process(process)


def wait_for_scrapes(
    url: str, process: subprocess.Popen[bytes], log_path: Path
) -> None:
    """Wait until Prometheus has scraped the service a few times."""
    query = f'count_over_time(up{{job="watchtime"}}[1m]) >= {SCRAPES_BEFORE_QUERIES}'
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited:\n{log_path.read_text(errors='replace')}")
        try:
            # Prometheus answers 503 in plain text until it is ready.
            ready = httpx.get(f"{url}/-/ready", timeout=2.0).status_code == 200
            if ready and instant_query(url, query)["data"]["result"]:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(
        f"prometheus did not scrape the service {SCRAPES_BEFORE_QUERIES} times "
        f"in {STARTUP_TIMEOUT_S} s:\n{log_path.read_text(errors='replace')}"
    )


def instant_query(url: str, expression: str) -> dict[str, Any]:
    """Return Prometheus' JSON answer to one instant query."""
    response = httpx.get(
        f"{url}/api/v1/query", params={"query": expression}, timeout=10.0
    )
    return response.json()


def test_prometheus_config_passes_promtool():
    promtool = require_program("promtool")

    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_scrapes_compose_service():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))

    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["watchtime:8000"]}]


@pytest.mark.parametrize(
    "expression",
    [pytest.param(expr, id=name) for name, expr in dashboard_expressions().items()],
)
def test_dashboard_expression_runs_on_prometheus(prometheus, expression):
    answer = instant_query(prometheus, expression)

    assert answer["status"] == "success", answer


def test_dashboard_queries_see_scraped_requests(prometheus):
    answer = instant_query(prometheus, 'watchtime_requests_total{endpoint="rank"}')

    assert answer["data"]["result"], "no ranking requests were scraped"


def test_dashboard_uses_only_known_grafana_variables():
    unknown = {
        variable
        for expression in dashboard_expressions().values()
        for variable in re.findall(r"\$\w+", expression)
    }

    assert unknown == set()


@pytest.mark.parametrize("metric", DASHBOARD_METRICS)
def test_dashboard_queries_metric(metric):
    expressions = " ".join(dashboard_expressions().values())

    assert re.search(rf"\b{metric}(_bucket|_sum|_count)?\b", expressions)


def test_dashboard_targets_use_provisioned_datasource():
    provisioned = {
        source["uid"]
        for path in DATASOURCES.glob("*.yml")
        for source in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]
    }

    used = {target["datasource"]["uid"] for target in dashboard_targets().values()}

    assert used <= provisioned
