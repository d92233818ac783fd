"""`watchtime bench`: open-loop benchmark of the service against two references.

The command starts `watchtime serve` and the naive endpoint of
`load_tests.naive_app` on free loopback ports, one after the other, and
steps each through constant arrival rates for every candidate mix. It also
times the in-process ranking pipeline (the floor) on the same bodies. It
writes `results.json`, `summary.md` and `latency.png` to the output
directory and prints the summary. `--soak` runs the service for a long time
at one rate instead and checks that its workers' memory stays flat.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from app.model import locate_model, read_manifest
from load_tests.bodies import parse_mix
from load_tests.floor import measure_floor
from load_tests.loadgen import StepPlan
from load_tests.plot import plot_latency
from load_tests.profile import Profiler
from load_tests.report import (
    add_ratios,
    check_soak,
    evaluate_targets,
    render_markdown,
    render_soak_markdown,
)
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

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPOSITORY = ROOT / "models"
DEFAULT_MIXES = ("500@25", "50@5")
DEFAULT_P99_BOUND_MS = 25.0
DEFAULT_RATES = "10,25,50,100,200,400,600,800,1000,1200,1500,2000,2500"
GIB = 1024**3

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark or the soak and return the exit status."""
    options = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    output = options.output or ROOT / "runs" / "bench" / _timestamp()
    output.mkdir(parents=True, exist_ok=True)
    if options.soak:
        run_soak(options, output)
    else:
        run_benchmark(options, output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the command line parser of `watchtime bench`."""
    parser = argparse.ArgumentParser(
        prog="watchtime bench",
        description="Benchmark the ranking service on loopback with an open-loop "
        "load generator, against the in-process pipeline and a naive endpoint.",
    )
    _add_server_options(parser)
    _add_load_options(parser)
    _add_soak_options(parser)
    parser.add_argument(
        "--output",
        type=Path,
        help="directory of the results (default: runs/bench/<UTC time>)",
    )
    return parser


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=DEFAULT_REPOSITORY,
        help="model repository to serve (default: the bundled models/)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="worker processes of each server (default: the usable CPUs)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        type=_parse_settings,
        metavar="NAME=VALUE,...",
        help="service settings of one configuration to benchmark, such as "
        "BATCHING=true; the WATCHTIME_ prefix is optional; repeat to compare "
        "configurations (default: one configuration with no extra settings)",
    )
    parser.add_argument(
        "--servers",
        type=_parse_servers,
        default=("service", "naive"),
        help="servers to measure, in order, from service, naive and sink; the "
        "sink returns a fixed response and measures the load generator alone "
        "(default: service,naive)",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the in-process floor"
    )
    parser.add_argument(
        "--floor-seconds",
        type=float,
        default=10.0,
        help="duration of the in-process floor per mix, in seconds",
    )
    parser.add_argument(
        "--floor-processes",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="processes of the in-process floor (default: the usable CPUs)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record a py-spy profile of the service's workers at the highest "
        "rate they kept up with",
    )


def _add_load_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mix",
        action="append",
        metavar="COUNTS[@P99_MS]",
        help="candidates per request and the p99 bound in ms, such as 500@25, "
        "1-5000 or 50:3,500:1@25; repeat for several sweeps "
        f"(default: {' and '.join(DEFAULT_MIXES)})",
    )
    parser.add_argument(
        "--rates",
        type=_parse_rates,
        default=_parse_rates(DEFAULT_RATES),
        help=f"offered rates in requests/s, in order (default: {DEFAULT_RATES})",
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=10.0,
        help="duration of each rate step, in seconds",
    )
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=2.0,
        help="time from a request's scheduled send to its timeout",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=1.5,
        help="pause after each step, for the server to drain",
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=3.0,
        help="unrecorded step at the lowest rate before each sweep",
    )
    parser.add_argument(
        "--stop-after-overloaded",
        type=int,
        default=2,
        help="consecutive overloaded steps (errors, or less than 99%% of the "
        "offered rate achieved) that end a sweep",
    )
    parser.add_argument(
        "--refine-steps",
        type=int,
        default=2,
        help="bisection steps between the last passing and first failing rate",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="keep-alive connections of the load generator",
    )
    parser.add_argument(
        "--bodies",
        type=int,
        default=32,
        help="distinct request bodies per mix, sent in turn",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the request bodies"
    )


def _add_soak_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--soak", action="store_true", help="run the soak instead of the rate steps"
    )
    parser.add_argument(
        "--soak-minutes", type=int, default=20, help="duration of the soak, in minutes"
    )
    parser.add_argument(
        "--soak-rate",
        type=float,
        default=10.0,
        help="offered rate of the soak, in requests/s",
    )
    parser.add_argument(
        "--soak-mix", default="1-5000", help="candidates per request during the soak"
    )
    parser.add_argument(
        "--soak-sample-seconds",
        type=float,
        default=60.0,
        help="interval between worker RSS samples, in seconds",
    )


def _parse_settings(text: str) -> dict[str, str]:
    settings = {}
    for pair in filter(None, text.split(",")):
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise argparse.ArgumentTypeError(
                f"invalid setting {pair!r}: expected NAME=VALUE, such as BATCHING=true"
            )
        settings[name.strip()] = value.strip()
    return settings


def _parse_servers(text: str) -> tuple[str, ...]:
    servers = tuple(part.strip() for part in text.split(","))
    unknown = set(servers) - {"service", "naive", "sink"}
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown servers {sorted(unknown)}: choose from service, naive and sink"
        )
    return servers


def _parse_rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid rates {text!r}: expected numbers separated by commas"
        ) from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"invalid rates {text!r}: each must be > 0")
    return rates


def parse_mix_option(text: str) -> tuple[str, float]:
    """Split `COUNTS@P99_MS` into the mix label and the bound in milliseconds."""
    label, _, bound = text.partition("@")
    parse_mix(label)
    return label, float(bound) if bound else DEFAULT_P99_BOUND_MS


def run_benchmark(options: argparse.Namespace, output: Path) -> dict[str, Any]:
    """Measure the floor and every server, then write and print the results."""
    mixes = dict(parse_mix_option(m) for m in options.mix or DEFAULT_MIXES)
    features = _feature_spec(options.model_repository)
    results: dict[str, Any] = {
        "started_at": _timestamp(),
        "machine": describe_machine(),
        "load_before": _load_average(),
        "options": _options_record(options),
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

    results["load_after"] = _load_average()
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
    with _server_and_generator(options, spec, features, list(mixes), output) as running:
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
def _server_and_generator(
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


def run_soak(options: argparse.Namespace, output: Path) -> dict[str, Any]:
    """Run the service at one rate for a long time and sample its workers' RSS."""
    features = _feature_spec(options.model_repository)
    settings = (options.variant or [{}])[0]
    spec = service_spec(
        "service", options.model_repository, options.workers, find_free_port(), settings
    )
    soak: dict[str, Any] = {
        "started_at": _timestamp(),
        "machine": describe_machine(),
        "load_before": _load_average(),
        "options": _options_record(options),
        "minutes": options.soak_minutes,
        "rate": options.soak_rate,
        "mix": options.soak_mix,
        "steps": [],
    }
    with _server_and_generator(
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
        for minute in range(samples):
            step = measured_step(generator, tree, plan)
            soak["steps"].append(step)
            logger.info(
                "soak sample %d: RSS MB %s, p99 %s ms",
                minute + 1,
                step["worker_rss_mb"],
                step["latency_ms"]["p99"],
            )

    soak["load_after"] = _load_average()
    soak["worker_rss_mb"] = _rss_series(soak["steps"])
    soak["rss_check"] = check_soak(soak)
    _write_json(output / "soak.json", soak)
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


def _feature_spec(repository: Path) -> list[dict[str, Any]]:
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


def _load_average() -> str:
    one_minute, five_minutes, fifteen_minutes = os.getloadavg()
    return f"{one_minute:.2f}, {five_minutes:.2f}, {fifteen_minutes:.2f} (1, 5, 15 min)"


def _options_record(options: argparse.Namespace) -> dict[str, Any]:
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(options).items()
    }


def _write_results(results: dict[str, Any], output: Path) -> None:
    _write_json(output / "results.json", results)
    summary = render_markdown(results)
    (output / "summary.md").write_text(summary, encoding="utf-8")
    plot_latency(results, output / "latency.png")
    print(summary)
    logger.info("wrote results.json, summary.md and latency.png to %s", output)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")


if __name__ == "__main__":
    sys.exit(main())
