"""Facts about a benchmark run: the machine, its load, the time and the model."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from app.model import locate_model, read_manifest

GIB = 1024**3


def feature_spec(repository: Path) -> list[dict[str, Any]]:
    manifest = read_manifest(locate_model(repository).manifest_path)
    return manifest["feature_spec"]["features"]


def describe_machine() -> dict[str, Any]:
    """Return the CPU model, usable cores, memory and Python version."""
    return {
        "cpu_model": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in lscpu.stdout.splitlines():
        if line.startswith("Model name:"):
            return line.partition(":")[2].strip()
    return "unknown"


def load_average() -> str:
    one_minute, five_minutes, fifteen_minutes = os.getloadavg()
    return f"{one_minute:.2f}, {five_minutes:.2f}, {fifteen_minutes:.2f} (1, 5, 15 min)"


def options_record(options: argparse.Namespace) -> dict[str, Any]:
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(options).items()
    }


def write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
