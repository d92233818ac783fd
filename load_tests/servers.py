"""Servers under test: the service and the naive endpoint, run as subprocesses.

Each server listens on a free loopback port, is ready once a probe request
returns 200, and is stopped with SIGTERM, then SIGKILL after a grace period,
when its context ends. `ProcessTree` reads the CPU time and memory of a
server's process and all its workers with psutil.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_S = 120.0
SHUTDOWN_TIMEOUT_S = 15.0
SERVICE_ENV_PREFIX = "WATCHTIME_"

logger = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """A server exited or did not become ready during start-up."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server under test and how to tell it is ready."""

    label: str
    command: tuple[str, ...]
    env: dict[str, str]
    ready_path: str


@dataclass(frozen=True)
class RunningServer:
    """A started server: its label, port and process."""

    label: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path


def find_free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def base_env(settings: dict[str, str]) -> dict[str, str]:
    """Return this process's environment without WATCHTIME_ variables, plus settings.

    Setting names get the WATCHTIME_ prefix when they lack it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVICE_ENV_PREFIX)}
    for name, value in settings.items():
        upper = name.upper()
        key = (
            upper
            if upper.startswith(SERVICE_ENV_PREFIX)
            else SERVICE_ENV_PREFIX + upper
        )
        env[key] = value
    return env


def service_spec(
    label: str, repository: Path, workers: int, port: int, settings: dict[str, str]
) -> ServerSpec:
    """Describe `watchtime serve` with the given model repository and settings."""
    command = (
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--model-repository",
        str(repository),
    )
    return ServerSpec(label, command, base_env(settings), "/readyz")


def naive_spec(label: str, model_dir: Path, workers: int, port: int) -> ServerSpec:
    """Describe the naive endpoint served by uvicorn with its default options."""
    command = (
        sys.executable,
        "-m",
        "uvicorn",
        "load_tests.naive_app:create_app_from_env",
        "--factory",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        str(workers),
    )
    env = base_env({})
    env["NAIVE_APP_MODEL_DIR"] = str(model_dir)
    return ServerSpec(label, command, env, "/openapi.json")


def sink_spec(label: str, port: int) -> ServerSpec:
    """Describe the HTTP sink of `load_tests.sink`, which costs nothing per request."""
    command = (sys.executable, "-m", "load_tests.sink", "--port", str(port))
    return ServerSpec(label, command, base_env({}), "/")


@contextmanager
def run_server(spec: ServerSpec, port: int, log_path: Path) -> Iterator[RunningServer]:
    """Start a server, wait until it responds, and stop it when the context ends."""
    logger.info("starting %s on port %s", spec.label, port)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            spec.command, env=spec.env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = RunningServer(spec.label, port, process, log_path)
    try:
        _wait_until_ready(server, spec.ready_path)
        yield server
    finally:
        stop_process(process)
        logger.info("stopped %s", spec.label)


def _wait_until_ready(server: RunningServer, path: str) -> None:
    url = f"http://{LOOPBACK}:{server.port}{path}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(
                f"{server.label} exited with status {server.process.returncode} "
                f"during start-up; its log is {server.log_path}"
            )
        if _returns_ok(url):
            return
        time.sleep(0.2)
    raise ServerStartError(
        f"{server.label} was not ready after {STARTUP_TIMEOUT_S:.0f} s; "
        f"its log is {server.log_path}"
    )


def _returns_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop_process(process: subprocess.Popen) -> None:
    """Stop a process with SIGTERM, then SIGKILL if it outlives the grace period."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logger.warning("process %s ignored SIGTERM, killing it", process.pid)
        process.kill()
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)


class ProcessTree:
    """CPU time and memory of a server process and its descendants."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def workers(self) -> list[psutil.Process]:
        """Return the processes that serve requests.

        uvicorn with several workers runs them as spawned children of a
        supervisor; with one worker the root process serves. Helper children
        such as multiprocessing's resource tracker do not count.
        """
        children = [
            child
            for child in self.root.children(recursive=True)
            if "spawn_main" in " ".join(_cmdline(child))
        ]
        return children or [self.root]

    def cpu_seconds(self) -> float:
        """Return the user and system CPU seconds of every process of the tree."""
        total = 0.0
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def worker_rss_bytes(self) -> dict[int, int]:
        """Return the resident set size of each worker, by process id."""
        sizes = {}
        for worker in self.workers():
            try:
                sizes[worker.pid] = worker.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return sizes


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []
