"""A real Prometheus server on loopback that scrapes the service under test."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_helpers import LOOPBACK, find_free_port

SCRAPE_INTERVAL_S = 1
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunningPrometheus:
    """A Prometheus process and its HTTP API address."""

    base_url: str
    process: subprocess.Popen[bytes]

    def query(self, expression: str) -> dict[str, Any]:
        """Run an instant query and return the API's whole JSON answer."""
        response = httpx.get(
            self.base_url + "/api/v1/query", params={"query": expression}, timeout=10
        )
        return response.json()

    def scalar(self, expression: str) -> float | None:
        """Return the single value of a query, or None when it has no result."""
        result = self.query(expression)["data"]["result"]
        return float(result[0]["value"][1]) if result else None


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "prometheus not found: run scripts/install-test-tools.sh as root, or "
            "install Debian's prometheus package"
        )
    return binary


@contextmanager
def run_prometheus(target: str, directory: Path) -> Iterator[RunningPrometheus]:
    """Start Prometheus scraping `target` (host:port) every second; stop at exit."""
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL_S}s\n"
        "scrape_configs:\n"
        "  - job_name: watchtime\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n",
        encoding="utf-8",
    )
    port = find_free_port()
    command = [
        prometheus_binary(),
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
    ]
    with (directory / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    running = RunningPrometheus(f"http://{LOOPBACK}:{port}", process)
    try:
        _wait_until_ready(running, directory / "prometheus.log")
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


def _wait_until_ready(prometheus: RunningPrometheus, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            pytest.fail(f"prometheus exited:\n{log.read_text(errors='replace')}")
        try:
            if (
                httpx.get(prometheus.base_url + "/-/ready", timeout=1).status_code
                == 200
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"prometheus was not ready after {STARTUP_TIMEOUT_S} s")


def wait_for_value(
    prometheus: RunningPrometheus, expression: str, expected: float, timeout_s: float
) -> float | None:
    """Poll a query until it returns `expected` or the time is up; return the last."""
    deadline = time.monotonic() + timeout_s
    value = prometheus.scalar(expression)
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        value = prometheus.scalar(expression)
    return value
