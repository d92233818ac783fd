"""Train a model on an impression log and export it to the model repository."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.contract import WATCH_TIME_OUTPUT
from trainer.evaluate import holdout_metrics
from trainer.export import (
    golden_outputs,
    golden_requests,
    graph_signature,
    manifest_header,
    next_version,
    run_graph,
    write_model,
)
from trainer.features import fit_spec
from trainer.fit import FitOptions, fit_weighted_lr
from trainer.graph import build_linear_graph
from trainer.tensors import log_tensors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """Output location and fitting options of a training run."""

    repository: Path
    name: str = "watchtime"
    version: int | None = None
    """Version to write; the next free integer when None."""
    seed: int = 0
    """Seed of the train/holdout split."""
    holdout_fraction: float = 0.2
    fit: FitOptions = field(default_factory=FitOptions)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_data(log: pd.DataFrame, source: str, files: list[Path]) -> dict[str, Any]:
    """Summarise a training log for the manifest: size, rates and file hashes."""
    return {
        "source": source,
        "files": [{"name": p.name, "sha256": file_sha256(p)} for p in files],
        "rows": len(log),
        "requests": int(log["request_id"].nunique()),
        "users": int(log["user_id"].nunique()),
        "click_rate": float(log["clicked"].mean()),
        "mean_watch_time_s": float(log["watch_time_s"].mean()),
    }


def split_by_request(
    log: pd.DataFrame, holdout_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split whole pages into train and holdout, so no page is in both."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(
            f"holdout fraction {holdout_fraction} is outside (0, 1); use e.g. 0.2"
        )
    pages = log["request_id"].unique()
    rng = np.random.default_rng(seed)
    holdout_size = max(1, int(len(pages) * holdout_fraction))
    holdout_pages = set(rng.choice(pages, size=holdout_size, replace=False))
    in_holdout = log["request_id"].isin(holdout_pages).to_numpy()
    train_log = log[~in_holdout].reset_index(drop=True)
    return train_log, log[in_holdout].reset_index(drop=True)


def creation_time() -> str:
    """Return now in UTC, or SOURCE_DATE_EPOCH when set, for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (
        dt.datetime.fromtimestamp(int(epoch), dt.UTC)
        if epoch
        else dt.datetime.now(dt.UTC)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def train(log: pd.DataFrame, data: dict[str, Any], options: TrainOptions) -> Path:
    """Fit the weighted LR, evaluate it on held-out pages and export it."""
    train_log, holdout = split_by_request(log, options.holdout_fraction, options.seed)
    spec = fit_spec(train_log)
    linear = fit_weighted_lr(spec, train_log, options.fit)
    model = build_linear_graph(spec, linear.bias, linear.weights)

    predicted = run_graph(model, log_tensors(spec, holdout))[WATCH_TIME_OUTPUT]
    metrics = holdout_metrics(holdout, predicted.astype(np.float64))
    logger.info(
        "holdout calibration ratio %s, xauc %s, ndcg@10 %s",
        metrics["calibration_ratio"],
        metrics["xauc"],
        metrics["ndcg_at_10"],
    )

    version = options.version or next_version(options.repository, options.name)
    manifest = manifest_header(options.name, version, creation_time(), "weighted")
    manifest |= graph_signature(model)
    manifest["feature_spec"] = spec.to_dict()
    manifest["training"] = {
        "data": data | {"train_rows": len(train_log), "holdout_rows": len(holdout)},
        "options": _options_record(options, linear.iterations, linear.converged),
    }
    manifest["metrics"] = metrics
    manifest["linear"] = {
        "bias": _float32(linear.bias),
        "weights": {k: [_float32(w) for w in v] for k, v in linear.weights.items()},
    }
    manifest["golden"] = golden_outputs(model, manifest, golden_requests(spec, holdout))

    directory = options.repository / options.name / str(version)
    write_model(directory, model, manifest)
    return directory


def _options_record(options: TrainOptions, iterations: int, converged: bool) -> dict:
    return {
        "seed": options.seed,
        "holdout_fraction": options.holdout_fraction,
        "fit": asdict(options.fit),
        "solver": "scikit-learn LogisticRegression(solver='lbfgs')",
        "iterations": iterations,
        "converged": converged,
    }


def _float32(value: float) -> float:
    """Round to float32, as the graph stores it, in its shortest decimal form."""
    return float(np.format_float_positional(np.float32(value), unique=True))
