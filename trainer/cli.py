"""The training subcommands of `watchtime`: simulate, train and evaluate."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from app.contract import WATCH_TIME_OUTPUT, FeatureSpec
from trainer.evaluate import holdout_metrics
from trainer.export import run_graph
from trainer.fit import FitOptions
from trainer.kuairand import load_kuairand
from trainer.logs import read_log, write_log
from trainer.pipeline import TrainOptions, describe_data, train
from trainer.simulate import simulate_log
from trainer.tensors import log_tensors

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watchtime")
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
    simulate.add_argument("--seed", type=int, default=0, help="random seed")
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
    fit.add_argument("--name", default="watchtime", help="model name")
    fit.add_argument("--version", type=int, help="version to write; default: next free")
    fit.add_argument("--seed", type=int, default=0, help="seed of the holdout split")
    fit.add_argument(
        "--holdout-fraction", type=float, default=0.2, help="share of pages held out"
    )
    fit.add_argument(
        "--l2", type=float, default=0.1, help="inverse L2 strength, scikit-learn C"
    )
    fit.add_argument("--max-iter", type=int, default=500, help="L-BFGS iteration limit")

    evaluate = commands.add_parser(
        "evaluate", help="score a log with an exported model"
    )
    evaluate.add_argument(
        "--model", type=Path, required=True, help="model version directory"
    )
    evaluate.add_argument("--log", type=Path, required=True, help="impression log")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one training subcommand; return the process exit code."""
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    args = build_parser().parse_args(argv)
    handlers = {"simulate": _simulate, "train": _train, "evaluate": _evaluate}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"watchtime {args.command}: {error}", file=sys.stderr)
        return 2


def _simulate(args: argparse.Namespace) -> int:
    log = simulate_log(rows=args.rows, click_rate=args.click_rate, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_log(log, args.out)
    logger.info("wrote %s rows to %s", len(log), args.out)
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.log is not None:
        log = read_log(args.log)
        data = describe_data(log, "impression log", [args.log])
    else:
        if args.kuairand_users is None or args.kuairand_videos is None:
            raise ValueError(
                "--kuairand-log needs --kuairand-users and --kuairand-videos"
            )
        log = load_kuairand(
            args.kuairand_log, args.kuairand_users, args.kuairand_videos
        )
        files = [*args.kuairand_log, args.kuairand_users, args.kuairand_videos]
        data = describe_data(log, "kuairand", files)

    options = TrainOptions(
        repository=args.model_repository,
        name=args.name,
        version=args.version,
        seed=args.seed,
        holdout_fraction=args.holdout_fraction,
        fit=FitOptions(l2=args.l2, max_iter=args.max_iter),
    )
    directory = train(log, data, options)
    print(directory)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    manifest_path = args.model / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    log = read_log(args.log)

    outputs = run_graph(args.model / "model.onnx", log_tensors(spec, log))
    metrics = holdout_metrics(log, outputs[WATCH_TIME_OUTPUT].astype(np.float64))
    print(json.dumps(metrics, indent=2))
    return 0
