"""Soak: the service at one rate for a long time, with worker RSS each minute."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from load_tests.benchmark import server_and_generator
from load_tests.loadgen import StepPlan
from load_tests.machine import (
    describe_machine,
    feature_spec,
    load_average,
    options_record,
    timestamp,
    write_json,
)
from load_tests.report import check_soak, render_soak_markdown
from load_tests.servers import ProcessTree, find_free_port, service_spec
from load_tests.sweep import measured_step

logger = logging.getLogger(__name__)


def run_soak(options: argparse.Namespace, output: Path) -> dict[str, Any]:
    """Run the service at one rate for a long time and sample its workers' RSS."""
    features = feature_spec(options.model_repository)
    settings = (options.variant or [{}])[0]
    spec = service_spec(
        "service", options.model_repository, options.workers, find_free_port(), settings
    )
    soak: dict[str, Any] = {
        "started_at": timestamp(),
        "machine": describe_machine(),
        "load_before": load_average(),
        "options": options_record(options),
        "minutes": options.soak_minutes,
        "rate": options.soak_rate,
        "mix": options.soak_mix,
        "steps": [],
    }
    with server_and_generator(
        options, spec, features, [options.soak_mix], output
    ) as running:
        server, generator = running
        tree = ProcessTree(server.process.pid)
        plan = StepPlan(
            options.soak_rate,
            options.soak_sample_seconds,
            options.timeout_seconds,
            options.soak_mix,
        )
        samples = round(options.soak_minutes * 60 / options.soak_sample_seconds)
        for sample in range(samples):
            step = measured_step(generator, tree, plan)
            soak["steps"].append(step)
            logger.info(
                "soak sample %d: RSS MB %s, p99 %s ms",
                sample + 1,
                step["worker_rss_mb"],
                step["latency_ms"]["p99"],
            )

    soak["load_after"] = load_average()
    soak["worker_rss_mb"] = _rss_series(soak["steps"])
    soak["rss_check"] = check_soak(soak)
    write_json(output / "soak.json", soak)
    summary = render_soak_markdown(soak)
    (output / "soak.md").write_text(summary, encoding="utf-8")
    print(summary)
    return soak


def _rss_series(steps: list[dict[str, Any]]) -> dict[str, list[float]]:
    series: dict[str, list[float]] = {}
    for step in steps:
        for pid, rss in step["worker_rss_mb"].items():
            series.setdefault(pid, []).append(rss)
    return series
