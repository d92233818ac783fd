"""In-process floor: the ranking pipeline timed in a loop, without HTTP.

Each process builds the service's application objects, loads the model, and
calls `RankingService.rank_json` (decode, features, inference, sort, encode)
on the benchmark's bodies back to back for a fixed time. Processes run side
by side, one per core by default, so their summed throughput is what the
machine can rank when no HTTP, event loop or thread hand-off is involved.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from app.main import create_app
from app.settings import load_settings
from load_tests.bodies import build_bodies, parse_mix
from load_tests.loadgen import percentiles_ms

WARMUP_REQUESTS = 20


def measure_floor(
    repository: Path,
    features: list[dict[str, Any]],
    mix_label: str,
    body_count: int,
    seed: int,
    duration_s: float,
    processes: int,
) -> dict[str, Any]:
    """Run the pipeline in `processes` processes and return the combined figures."""
    arguments = (
        repository,
        features,
        mix_label,
        body_count,
        seed,
        duration_s,
        processes,
    )
    # spawn, because a forked child would inherit this process's threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [pool.submit(_rank_in_loop, *arguments) for _ in range(processes)]
        runs = [future.result() for future in futures]
    return _combine(mix_label, processes, runs)


def _rank_in_loop(
    repository: Path,
    features: list[dict[str, Any]],
    mix_label: str,
    body_count: int,
    seed: int,
    duration_s: float,
    processes: int,
) -> dict[str, Any]:
    service = _load_ranking_service(repository, processes)
    bodies = build_bodies(features, parse_mix(mix_label), body_count, seed)
    for index in range(WARMUP_REQUESTS):
        service.rank_json(bodies[index % len(bodies)].content, None)

    latencies_s: list[float] = []
    candidates = 0
    started = time.perf_counter()
    deadline = started + duration_s
    now = started
    while now < deadline:
        body = bodies[len(latencies_s) % len(bodies)]
        service.rank_json(body.content, None)
        finished = time.perf_counter()
        latencies_s.append(finished - now)
        candidates += body.candidates
        now = finished
    return {
        "latencies_s": latencies_s,
        "candidates": candidates,
        "elapsed_s": now - started,
    }


def _load_ranking_service(repository: Path, processes: int) -> Any:
    """Build the service's RankingService with its model loaded, as a worker does.

    The settings count the floor's processes as workers, so that settings
    derived from the worker count, such as onnxruntime's threads, match a
    server with as many workers.
    """
    settings = load_settings(
        model_repository=repository, reload_interval_s=0, workers=processes
    )
    app = create_app(settings)
    app.state.model_manager.load_initial()
    return app.state.ranking_service


def _combine(
    mix_label: str, processes: int, runs: list[dict[str, Any]]
) -> dict[str, Any]:
    requests_per_s = sum(len(run["latencies_s"]) / run["elapsed_s"] for run in runs)
    candidates_per_s = sum(run["candidates"] / run["elapsed_s"] for run in runs)
    latencies = [latency for run in runs for latency in run["latencies_s"]]
    return {
        "mix": mix_label,
        "processes": processes,
        "requests": len(latencies),
        "requests_per_s": round(requests_per_s, 1),
        "candidates_per_s": round(candidates_per_s, 1),
        "latency_ms": percentiles_ms(latencies),
    }
