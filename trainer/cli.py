"""The training subcommands of `watchtime`: simulate, train, evaluate, compare."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from app.contract import WATCH_TIME_OUTPUT
from app.errors import ModelLoadError
from app.model import (
    MANIFEST_FILE,
    ModelLocation,
    RankingModel,
    load_model,
    read_manifest,
)
from trainer.compare import CLICK_RATES, DEPTHS, CompareOptions, run_comparison
from trainer.evaluate import holdout_metrics
from trainer.export import ExportError, check_model_name
from trainer.fit import DEFAULT_L2, POISSON_DEFAULT_L2, FitOptions
from trainer.kuairand import load_kuairand
from trainer.logs import read_log, write_log
from trainer.mlp import NetworkOptions
from trainer.outputs import POISSON, VARIANTS, WEIGHTED
from trainer.pipeline import TrainOptions, describe_data, free_version, train
from trainer.resample import ResampleOptions
from trainer.selection import L2_GRID
from trainer.simulate import simulate_log
from trainer.tensors import log_tensors

logger = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1
"""Largest seed that both numpy and scikit-learn accept."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser that reports a bad argument in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; run {self.prog} --help for usage\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="watchtime")
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="write a simulated impression log")
    simulate.add_argument(
        "--rows", type=int, default=200_000, help="impressions to write"
    )
    simulate.add_argument(
        "--click-rate",
        type=float,
        default=0.05,
        help="mean click probability, in (0, 1)",
    )
    simulate.add_argument("--seed", type=seed, default=0, help="random seed")
    simulate.add_argument(
        "--out", type=Path, required=True, help="CSV path (.csv or .csv.gz)"
    )

    fit = commands.add_parser("train", help="fit a model and export it")
    source = fit.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--log", type=Path, help="impression log in the project's format"
    )
    source.add_argument(
        "--kuairand-log", type=Path, nargs="+", help="KuaiRand log CSV files"
    )
    fit.add_argument("--kuairand-users", type=Path, help="KuaiRand user feature CSV")
    fit.add_argument("--kuairand-videos", type=Path, help="KuaiRand video feature CSV")
    fit.add_argument(
        "--model-repository", type=Path, default=Path("models"), help="repository root"
    )
    fit.add_argument("--name", type=model_name, default="watchtime", help="model name")
    fit.add_argument(
        "--version", type=version, help="version to write; default: next free"
    )
    fit.add_argument("--seed", type=seed, default=0, help="seed of the holdout split")
    fit.add_argument(
        "--holdout-fraction", type=float, default=0.2, help="share of pages held out"
    )
    fit.add_argument(
        "--variant",
        choices=VARIANTS,
        default=WEIGHTED,
        help="training variant (default: weighted); docs/training.md compares them",
    )
    _addfit_options(fit)
    fit.add_argument(
        "--l2-grid",
        type=l2_list,
        default=(),
        help="candidate --l2 values, e.g. 0.01,0.1,1; each linear model takes the "
        "one with the lowest loss on 20%% of the training pages (default: none, "
        "use --l2)",
    )
    fit.add_argument(
        "--hidden",
        type=hidden_layers,
        default=NetworkOptions().hidden,
        help="weighted-mlp hidden layer sizes, e.g. 256,128,64, or none",
    )

    evaluate = commands.add_parser(
        "evaluate", help="score a log with an exported model"
    )
    evaluate.add_argument(
        "--model", type=Path, required=True, help="model version directory"
    )
    evaluate.add_argument("--log", type=Path, required=True, help="impression log")

    _add_compare_parser(commands)
    return parser


def _addfit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--l2",
        type=positive_number,
        default=None,
        help=f"inverse L2 strength, scikit-learn C, greater than 0 (default: "
        f"{POISSON_DEFAULT_L2} for poisson, {DEFAULT_L2} for the other variants)",
    )
    parser.add_argument(
        "--max-iter", type=positive_count, default=500, help="L-BFGS iteration limit"
    )
    parser.add_argument(
        "--resample-max-rows",
        type=positive_count,
        default=ResampleOptions().max_rows,
        help="resampled: largest replicated log, which sets the unit",
    )
    parser.add_argument(
        "--resample-unit-s",
        type=float,
        help="resampled: seconds of watch time per copy (default: the smallest "
        "unit of at least 1 s that fits --resample-max-rows)",
    )
    parser.add_argument(
        "--max-epochs",
        type=positive_count,
        default=NetworkOptions().max_epochs,
        help="weighted-mlp: largest number of Adam epochs",
    )


def _add_compare_parser(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare",
        help="train every variant on simulated logs and write a report",
        description="Train every variant on simulated logs at several click "
        "rates and write report.json, report.md and PNG figures.",
    )
    compare.add_argument("--out", type=Path, required=True, help="report directory")
    compare.add_argument(
        "--rows", type=int, default=200_000, help="impressions per simulated log"
    )
    compare.add_argument(
        "--seeds", type=seed_list, default=(1,), help="seeds, e.g. 1,2,3"
    )
    compare.add_argument(
        "--click-rates",
        type=rate_list,
        default=CLICK_RATES,
        help="mean click probabilities, e.g. 0.02,0.1,0.25,0.45",
    )
    compare.add_argument(
        "--variants",
        type=variant_list,
        default=VARIANTS,
        help=f"variants to train, from {','.join(VARIANTS)}",
    )
    compare.add_argument(
        "--hidden",
        type=hidden_layers,
        action="append",
        help="weighted-mlp hidden layer sizes; repeat for several depths "
        "(default: none, 64, 128,64 and 256,128,64)",
    )
    compare.add_argument(
        "--l2-grid",
        type=l2_list,
        default=L2_GRID,
        help="candidate --l2 values of the linear models, chosen by validation "
        f"loss; none uses --l2 (default: {','.join(map(str, L2_GRID))})",
    )
    _addfit_options(compare)


def hidden_layers(text: str) -> tuple[int, ...]:
    """Parse `256,128,64` into layer sizes; `none` or an empty text is ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid hidden layer sizes {text!r}; write e.g. 256,128,64 or none"
        ) from None


def seed(text: str) -> int:
    """Parse a random seed, a whole number from 0 to MAX_SEED."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"invalid seed {text!r}; use a whole number from 0 to {MAX_SEED}"
        )
    return value


def seed_list(text: str) -> tuple[int, ...]:
    """Parse `1,2,3` into seeds."""
    try:
        return tuple(seed(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"invalid seed list {text!r}; write whole numbers from 0 to {MAX_SEED}, "
            "e.g. 1,2,3"
        ) from None


def positive_number(text: str) -> float:
    """Parse a finite number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}; use a number greater than 0, e.g. 0.1"
        )
    return value


def positive_count(text: str) -> int:
    """Parse a whole number of 1 or more, such as an iteration limit."""
    return _whole_number_from_one(text, "value")


def version(text: str) -> int:
    """Parse a model version, a whole number of 1 or more."""
    return _whole_number_from_one(text, "version")


def _whole_number_from_one(text: str, noun: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"invalid {noun} {text!r}; use a whole number of 1 or more"
        )
    return value


def model_name(text: str) -> str:
    """Check that a model name is one safe directory name."""
    try:
        check_model_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def rate_list(text: str) -> tuple[float, ...]:
    """Parse `0.02,0.45` into click rates."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid click rate list {text!r}; write e.g. 0.02,0.1,0.25,0.45"
        ) from None


def l2_list(text: str) -> tuple[float, ...]:
    """Parse `0.01,0.1,1` into positive penalties; `none` is an empty grid."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0 < value < float("inf") for value in values):
        raise argparse.ArgumentTypeError(
            f"invalid l2 list {text!r}; write positive numbers such as 0.01,0.1,1 "
            "or none"
        )
    return values


def variant_list(text: str) -> tuple[str, ...]:
    """Parse `weighted,poisson` into variant names."""
    names = tuple(part.strip() for part in text.split(","))
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown variants {unknown}; choose from {','.join(VARIANTS)}"
        )
    return names


def input_file(path: Path, option: str) -> Path:
    """Return `path` if it is a file, else raise ValueError naming `option`."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a directory; pass the path of a CSV file")
    if not path.is_file():
        raise ValueError(f"{option} {path} not found; pass the path of a CSV file")
    return path


def main(argv: list[str] | None = None) -> int:
    """Run one training subcommand; return the process exit code."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(arguments)
    args.arguments = arguments
    handlers = {
        "simulate": _simulate,
        "train": _train,
        "evaluate": _evaluate,
        "compare": _compare,
    }
    try:
        return handlers[args.command](args)
    except (ValueError, OSError, ModelLoadError, ExportError) as error:
        print(f"watchtime {args.command}: {error}", file=sys.stderr)
        return 2


def _simulate(args: argparse.Namespace) -> int:
    log = simulate_log(rows=args.rows, click_rate=args.click_rate, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_log(log, args.out)
    logger.info("wrote %s rows to %s", len(log), args.out)
    return 0


def _train(args: argparse.Namespace) -> int:
    options = TrainOptions(
        repository=args.model_repository,
        name=args.name,
        version=args.version,
        seed=args.seed,
        holdout_fraction=args.holdout_fraction,
        variant=args.variant,
        fit=fit_options(args),
        resample=_resample_options(args),
        network=NetworkOptions(hidden=args.hidden, max_epochs=args.max_epochs),
    )
    # Reading a large log takes a while, so a taken version fails first.
    free_version(options)
    log, data = _read_training_log(args)

    directory = train(log, data, options)
    print(directory)
    return 0


def _read_training_log(args: argparse.Namespace) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read the --log or the KuaiRand files and describe them for the manifest."""
    if args.log is not None:
        log = read_log(input_file(args.log, "--log"))
        return log, describe_data(log, "impression log", [args.log])

    if args.kuairand_users is None or args.kuairand_videos is None:
        raise ValueError("--kuairand-log needs --kuairand-users and --kuairand-videos")
    logs = [input_file(path, "--kuairand-log") for path in args.kuairand_log]
    users = input_file(args.kuairand_users, "--kuairand-users")
    videos = input_file(args.kuairand_videos, "--kuairand-videos")
    log = load_kuairand(logs, users, videos)
    return log, describe_data(log, "kuairand", [*logs, users, videos])


def fit_options(args: argparse.Namespace) -> FitOptions:
    """Return the fit options of the command line, with the variant's default `l2`."""
    return FitOptions(
        l2=default_l2(args) if args.l2 is None else args.l2,
        max_iter=args.max_iter,
        l2_grid=args.l2_grid,
    )


def default_l2(args: argparse.Namespace) -> float:
    """Return the `l2` of the trained variant when the command line sets none."""
    variant = getattr(args, "variant", None)
    return POISSON_DEFAULT_L2 if variant == POISSON else DEFAULT_L2


def _resample_options(args: argparse.Namespace) -> ResampleOptions:
    return ResampleOptions(max_rows=args.resample_max_rows, unit_s=args.resample_unit_s)


def _evaluate(args: argparse.Namespace) -> int:
    model = _load_evaluated_model(args.model)
    log = read_log(input_file(args.log, "--log"))
    if log.empty:
        raise ValueError(f"--log {args.log} has no rows; pass a log with impressions")

    outputs = model.predict(log_tensors(model.spec, log))
    metrics = holdout_metrics(log, outputs[WATCH_TIME_OUTPUT].astype(np.float64))
    print(json.dumps(metrics, indent=2))
    return 0


def _load_evaluated_model(directory: Path) -> RankingModel:
    """Load a version directory with the service's checks and golden replay."""
    if not directory.is_dir():
        raise ValueError(
            f"--model {directory} is not a directory; pass a model version "
            "directory such as models/watchtime/1"
        )

    # The name and version only label log lines. Taking them from the
    # manifest lets a copied directory load without a renamed-copy warning.
    manifest = read_manifest(directory / MANIFEST_FILE)
    location = ModelLocation(manifest.get("name"), manifest.get("version"), directory)
    return load_model(location)


def _compare(args: argparse.Namespace) -> int:
    # The report module draws figures with matplotlib, which only this
    # command needs, so it is imported here.
    from trainer.report import write_report

    options = CompareOptions(
        rows=args.rows,
        seeds=args.seeds,
        click_rates=args.click_rates,
        variants=args.variants,
        depths=tuple(args.hidden) if args.hidden else DEPTHS,
        fit=fit_options(args),
        resample=_resample_options(args),
        network=NetworkOptions(max_epochs=args.max_epochs),
    )
    runs, truths = run_comparison(options)
    command = shlex.join(["watchtime", *args.arguments])
    write_report(args.out, options, runs, truths, command)
    print(args.out)
    return 0
