"""Helpers that run the real service in subprocesses on loopback and read it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.contract import FeatureSpec
from app.v2.signature import DATATYPES
from trainer.tensors import request_tensors

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 60.0
INFER_PATH = "/v2/models/watchtime/infer"


@dataclass(frozen=True)
class RunningServer:
    """A service process and where to reach it."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def find_free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def service_env(**variables: str) -> dict[str, str]:
    """Return the environment of a service process, without the caller's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHTIME_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(variables)
    return env


def run_cli(*arguments: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m app.cli` to completion and return its result."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *arguments],
        cwd=ROOT,
        env=service_env(**variables),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


@contextmanager
def run_server(
    model_repository: Path, log_path: Path, *arguments: str, **variables: str
) -> Iterator[RunningServer]:
    """Start `watchtime serve` on a free port, wait until ready, stop it at exit."""
    port = find_free_port()
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--model-repository",
        str(model_repository),
        *arguments,
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=service_env(**variables),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(f"http://{LOOPBACK}:{port}", process, log_path)
    try:
        wait_until_ready(server.base_url, process, log_path)
        yield server
    finally:
        stop_process(process)


def wait_until_ready(
    base_url: str, process: subprocess.Popen[bytes], log_path: Path
) -> None:
    """Poll /readyz until it returns 200; fail the test if the process exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the service exited during start-up:\n{_read(log_path)}")
        try:
            if httpx.get(base_url + "/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(
        f"the service was not ready after {STARTUP_TIMEOUT_S} s:\n{_read(log_path)}"
    )


def _read(log_path: Path) -> str:
    return log_path.read_text(encoding="utf-8", errors="replace")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a process, kill it if it outlives the timeout, and reap it."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)


def scrape(
    client: httpx.Client,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of /metrics keyed by name and sorted labels."""
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    metric: str,
    /,
    **labels: str,
) -> float:
    """Return one sample's value from `scrape`, or 0 if it was never recorded."""
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def inference_body(manifest: dict[str, Any], candidates: int) -> bytes:
    """Return a JSON V2 inference body of `candidates` copies of a golden candidate.

    The candidates share the first golden request's context and the features
    of its first candidate, each with its own video id.
    """
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    golden = manifest["golden"][0]["request"]
    features = dict(golden["candidates"][0]["features"])
    features.pop("video_id", None)
    request = {
        "context": golden["context"],
        "candidates": [{"id": i + 1, "features": features} for i in range(candidates)],
    }
    inputs = [
        {
            "name": name,
            "shape": list(array.shape),
            "datatype": DATATYPES[array.dtype.name],
            "data": array.ravel().tolist(),
        }
        for name, array in request_tensors(spec, request).items()
    ]
    return json.dumps({"inputs": inputs}).encode()


def add_version(
    repository: Path,
    source: Path,
    version: int,
    edit: Callable[[Path], None] | None = None,
) -> Path:
    """Copy a version in under a temporary name, edit it, then rename it.

    Operators publish versions this way, and a poller that ran between copy
    and edit would otherwise load the copy as it was before the edit.
    """
    target = repository / "watchtime" / str(version)
    staging = repository / f".staging-{version}"
    shutil.copytree(source, staging)
    if edit is not None:
        edit(staging)
    staging.rename(target)
    return target
