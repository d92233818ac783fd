"""A short `watchtime bench` run: real service, naive endpoint and floor.

The run is 3 s at 20 req/s of 10-candidate requests with one worker each,
which checks the report's structure and that no request fails, not speed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from load_tests.bench import main

RUN_ARGUMENTS = shlex.split(
    "--mix 10@1000 --rates 20 --step-seconds 3 --warmup-seconds 0.5 "
    "--settle-seconds 0.2 --refine-steps 0 --workers 1 "
    "--floor-seconds 0.5 --floor-processes 1"
)


@pytest.fixture(scope="module")
def bench_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the output directory of one short benchmark run."""
    output = tmp_path_factory.mktemp("bench")
    main([*RUN_ARGUMENTS, "--output", str(output)])
    return output


@pytest.fixture(scope="module")
def results(bench_output: Path) -> dict[str, Any]:
    """Return the run's results.json."""
    return json.loads((bench_output / "results.json").read_text(encoding="utf-8"))


def test_bench_run_measures_service_and_naive(results):
    labels = [server["label"] for server in results["servers"]]

    assert labels == ["service", "naive"]


def test_bench_run_sends_without_errors(results):
    errors = [
        step["errors"]
        for server in results["servers"]
        for step in server["sweeps"]["10"]["steps"]
    ]

    assert errors == [0, 0]


def test_bench_run_completes_every_request(results):
    step = results["servers"][0]["sweeps"]["10"]["steps"][0]

    assert step["ok"] == step["scheduled"]


def test_bench_run_reports_latency_percentiles(results):
    latency = results["servers"][0]["sweeps"]["10"]["steps"][0]["latency_ms"]

    assert set(latency) == {"p50", "p95", "p99", "p99.9", "max"}


def test_bench_run_reports_server_cpu_and_worker_memory(results):
    step = results["servers"][0]["sweeps"]["10"]["steps"][0]

    assert step["service_cpu_cores"] > 0
    assert len(step["worker_rss_mb"]) == 1


def test_bench_run_reports_generator_cpu(results):
    step = results["servers"][0]["sweeps"]["10"]["steps"][0]

    assert step["generator_cpu_cores"] > 0


def test_bench_run_times_the_floor(results):
    floor = results["floor"]["10"]

    assert floor["candidates_per_s"] > 0


def test_bench_run_compares_service_with_references(results):
    sweep = results["servers"][0]["sweeps"]["10"]

    assert sweep["ratio_to_naive"] is not None
    assert sweep["peak_share_of_floor"] is not None


def test_bench_run_writes_summary_and_plot(bench_output):
    files = {path.name for path in bench_output.iterdir()}

    assert {"results.json", "summary.md", "latency.png"} <= files
