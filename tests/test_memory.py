"""The malloc arena cap reaches the server's worker processes."""

from __future__ import annotations

from pathlib import Path

import psutil

from service_helpers import run_server


def worker_environments(pid: int) -> list[dict[str, str]]:
    children = psutil.Process(pid).children(recursive=True)
    return [child.environ() for child in children]


def test_workers_start_with_two_malloc_arenas(model_repository, tmp_path: Path):
    arguments = ("--workers", "2")

    with run_server(model_repository, tmp_path / "log", *arguments) as server:
        environments = worker_environments(server.process.pid)

    assert len(environments) >= 2
    assert {env.get("MALLOC_ARENA_MAX") for env in environments} == {"2"}


def test_a_configured_arena_cap_is_kept(model_repository, tmp_path: Path):
    variables = {"MALLOC_ARENA_MAX": "4"}
    arguments = ("--workers", "2")

    with run_server(
        model_repository, tmp_path / "log", *arguments, **variables
    ) as server:
        environments = worker_environments(server.process.pid)

    assert {env.get("MALLOC_ARENA_MAX") for env in environments} == {"4"}
