"""One benchmark run: the floor, then each server's sweeps, then the report."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.model import locate_model
from load_tests.bodies import parse_mix
from load_tests.floor import measure_floor
from load_tests.loadgen import StepPlan
from load_tests.machine import (
    describe_machine,
    feature_spec,
    load_average,
    options_record,
    timestamp,
    write_json,
)
from load_tests.plot import plot_latency
from load_tests.profile import Profiler
from load_tests.report import add_ratios, evaluate_targets, render_markdown
from load_tests.servers import (
    ProcessTree,
    RunningServer,
    ServerSpec,
    find_free_port,
    naive_spec,
    run_server,
    service_spec,
    sink_spec,
)
from load_tests.sweep import (
    GeneratorProcess,
    SweepOptions,
    generator_config,
    is_overloaded,
    measured_step,
    run_sweep,
)

DEFAULT_P99_BOUND_MS = 25.0

logger = logging.getLogger(__name__)


def parse_mix_option(text: str) -> tuple[str, float]:
    """Split `COUNTS@P99_MS` into the mix label and the bound in milliseconds."""
    label, _, bound = text.partition("@")
    parse_mix(label)
    return label, float(bound) if bound else DEFAULT_P99_BOUND_MS


def run_benchmark(options: argparse.Namespace, output: Path) -> dict[str, Any]:
    """Measure the floor and every server, then write and print the results."""
    mixes = dict(parse_mix_option(m) for m in options.mix)
    features = feature_spec(options.model_repository)
    results: dict[str, Any] = {
        "started_at": timestamp(),
        "machine": describe_machine(),
        "load_before": load_average(),
        "options": options_record(options),
        "mixes": list(mixes),
        "floor": {},
        "servers": [],
        "generator": {"event_loop": None, "peak_cpu_cores": 0.0},
    }
    if not options.no_floor:
        results["floor"] = _measure_floors(options, features, mixes)
    for spec in _server_specs(options):
        results["servers"].append(
            _benchmark_server(options, spec, features, mixes, output, results)
        )

    results["load_after"] = load_average()
    add_ratios(results)
    results["targets"] = evaluate_targets(results)
    _write_results(results, output)
    return results


def _measure_floors(
    options: argparse.Namespace, features: list[dict[str, Any]], mixes: dict[str, float]
) -> dict[str, Any]:
    floors = {}
    for mix in mixes:
        logger.info("timing the in-process floor with %s candidates", mix)
        floors[mix] = measure_floor(
            options.model_repository,
            features,
            mix,
            options.bodies,
            options.seed,
            options.floor_seconds,
            options.floor_processes,
        )
    return floors


def _server_specs(options: argparse.Namespace) -> list[ServerSpec]:
    # The ports are picked here and bound by the servers a moment later.
    specs = []
    for server in options.servers:
        if server == "service":
            specs += [_service_spec(options, s) for s in options.variant or [{}]]
        elif server == "naive":
            model_dir = locate_model(options.model_repository).directory
            specs.append(
                naive_spec("naive", model_dir, options.workers, find_free_port())
            )
        else:
            specs.append(sink_spec("sink", find_free_port()))
    return specs


def _service_spec(options: argparse.Namespace, settings: dict[str, str]) -> ServerSpec:
    label = "service" + "".join(f" {k}={v}" for k, v in settings.items())
    return service_spec(
        label,
        options.model_repository,
        options.workers,
        find_free_port(),
        settings,
    )


def _benchmark_server(
    options: argparse.Namespace,
    spec: ServerSpec,
    features: list[dict[str, Any]],
    mixes: dict[str, float],
    output: Path,
    results: dict[str, Any],
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "label": spec.label,
        "kind": spec.label.split()[0],
        "command": list(spec.command),
        "workers": options.workers,
        "sweeps": {},
        "profiles": {},
    }
    with server_and_generator(options, spec, features, list(mixes), output) as running:
        server, generator = running
        results["generator"]["event_loop"] = generator.event_loop
        tree = ProcessTree(server.process.pid)
        for mix, bound in mixes.items():
            sweep = run_sweep(generator, tree, mix, bound, _sweep_options(options))
            record["sweeps"][mix] = sweep
            _note_generator_cpu(results, sweep)
            if options.profile and record["kind"] == "service":
                record["profiles"][mix] = _profile(
                    options, generator, tree, sweep, output, spec.label
                )
    return record


@contextmanager
def server_and_generator(
    options: argparse.Namespace,
    spec: ServerSpec,
    features: list[dict[str, Any]],
    mixes: list[str],
    output: Path,
) -> Iterator[tuple[RunningServer, GeneratorProcess]]:
    port = int(spec.command[spec.command.index("--port") + 1])
    log_path = output / f"{spec.label.split()[0]}-{port}.log"
    with run_server(spec, port, log_path) as server:
        config = generator_config(
            port, features, mixes, options.connections, options.bodies, options.seed
        )
        generator = GeneratorProcess(config)
        try:
            yield server, generator
        finally:
            generator.close()


def _sweep_options(options: argparse.Namespace) -> SweepOptions:
    return SweepOptions(
        rates=options.rates,
        step_s=options.step_seconds,
        timeout_s=options.timeout_seconds,
        settle_s=options.settle_seconds,
        warmup_s=options.warmup_seconds,
        stop_after_overloaded=options.stop_after_overloaded,
        refine_steps=options.refine_steps,
    )


def _note_generator_cpu(results: dict[str, Any], sweep: dict[str, Any]) -> None:
    peak = max(step["generator_cpu_cores"] for step in sweep["steps"])
    results["generator"]["peak_cpu_cores"] = max(
        results["generator"]["peak_cpu_cores"], peak
    )


def _profile(
    options: argparse.Namespace,
    generator: GeneratorProcess,
    tree: ProcessTree,
    sweep: dict[str, Any],
    output: Path,
    label: str,
) -> dict[str, Any]:
    """Profile the workers during one step at the highest rate they kept up with.

    That is the busiest rate without timeouts, so the samples show where the
    time goes when the service is the bottleneck.
    """
    steps = sweep["steps"]
    kept_up = [s["offered_rate"] for s in steps if not is_overloaded(s)]
    rate = max(kept_up) if kept_up else min(s["offered_rate"] for s in steps)
    server_name = label.replace(" ", "-").replace("=", "-")
    raw_path = output / f"profile-{server_name}-{sweep['mix']}.txt"
    profiler = Profiler(tree.root.pid, options.step_seconds, raw_path)
    step = measured_step(
        generator,
        tree,
        StepPlan(rate, options.step_seconds, options.timeout_seconds, sweep["mix"]),
    )
    summary = profiler.finish()
    summary["offered_rate"] = rate
    summary["step"] = step
    return summary


def _write_results(results: dict[str, Any], output: Path) -> None:
    write_json(output / "results.json", results)
    summary = render_markdown(results)
    (output / "summary.md").write_text(summary, encoding="utf-8")
    plot_latency(results, output / "latency.png")
    print(summary)
    logger.info("wrote results.json, summary.md and latency.png to %s", output)
