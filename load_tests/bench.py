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
import logging
import os
import sys
from pathlib import Path

from load_tests.benchmark import run_benchmark
from load_tests.machine import timestamp
from load_tests.soak import run_soak

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPOSITORY = ROOT / "models"
DEFAULT_MIXES = ("500@25", "50@5")
DEFAULT_RATES = "10,25,50,100,200,400,600,800,1000,1200,1500,2000,2500"

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark or the soak and return the exit status."""
    options = build_parser().parse_args(argv)
    # An append option's default list would be extended, not replaced.
    options.mix = options.mix or list(DEFAULT_MIXES)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    output = options.output or ROOT / "runs" / "bench" / timestamp()
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


if __name__ == "__main__":
    sys.exit(main())
