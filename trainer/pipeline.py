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
    check_logit_range,
    check_model_name,
    check_version,
    check_version_is_free,
    golden_outputs,
    golden_requests,
    graph_signature,
    manifest_header,
    next_version,
    run_graph,
    write_model,
)
from trainer.features import fit_spec
from trainer.fit import FitOptions
from trainer.graph import build_graph
from trainer.mlp import NetworkOptions
from trainer.outputs import RESAMPLED, WEIGHTED, WEIGHTED_MLP, output_descriptions
from trainer.parameters import manifest_parameters, rounded
from trainer.resample import ResampleOptions
from trainer.split import split_by_request
from trainer.tensors import log_tensors
from trainer.variants import FittedVariant, VariantOptions, fit_variant

__all__ = [
    "TrainOptions",
    "creation_time",
    "describe_data",
    "file_sha256",
    "free_version",
    "split_by_request",
    "train",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainOptions:
    """Output location, variant and fitting options of a training run."""

    repository: Path
    name: str = "watchtime"
    version: int | None = None
    """Version to write; the next free integer when None."""
    seed: int = 0
    """Seed of the train/holdout split, of resampling and of the network."""
    holdout_fraction: float = 0.2
    variant: str = WEIGHTED
    fit: FitOptions = field(default_factory=FitOptions)
    resample: ResampleOptions = field(default_factory=ResampleOptions)
    network: NetworkOptions = field(default_factory=NetworkOptions)

    def __post_init__(self) -> None:
        check_model_name(self.name)
        if self.version is not None:
            check_version(self.version)

    def variant_options(self) -> VariantOptions:
        return VariantOptions(self.variant, self.fit, self.resample, self.network)


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
    """Fit the chosen variant, evaluate it on held-out pages and export it.

    Raises FileExistsError before fitting when the chosen version exists, and
    ValueError when the log has fewer than two pages or its training pages
    contain no watched click.
    """
    version, directory = free_version(options)
    _check_page_count(log)
    train_log, holdout = split_by_request(log, options.holdout_fraction, options.seed)
    _check_watched_clicks(train_log)
    spec = fit_spec(train_log)
    fitted = fit_variant(spec, train_log, options.variant_options(), options.seed)
    network = rounded(fitted.network)
    low, high = check_logit_range(network)
    logger.info("logit bounds over all requests: [%.2f, %.2f]", low, high)
    model = build_graph(network)

    outputs = run_graph(model, log_tensors(network.spec, holdout))
    metrics = holdout_metrics(holdout, outputs[WATCH_TIME_OUTPUT].astype(np.float64))
    logger.info(
        "%s holdout calibration ratio %s, xauc %s, ndcg@10 %s",
        options.variant,
        metrics["calibration_ratio"],
        metrics["xauc"],
        metrics["ndcg_at_10"],
    )

    manifest = manifest_header(options.name, version, creation_time(), options.variant)
    manifest |= graph_signature(model, output_descriptions(options.variant))
    manifest["feature_spec"] = network.spec.to_dict()
    manifest["training"] = {
        "data": data | {"train_rows": len(train_log), "holdout_rows": len(holdout)},
        "options": _options_record(options, fitted),
    }
    manifest["metrics"] = metrics
    sections, parameter_file = manifest_parameters(network)
    manifest |= sections
    requests = golden_requests(network.spec, holdout)
    manifest["golden"] = golden_outputs(model, network, requests)

    write_model(directory, model, manifest, parameter_file)
    return directory


def free_version(options: TrainOptions) -> tuple[int, Path]:
    """Return the version to write and its directory.

    Raises FileExistsError when the directory exists already.
    """
    version = options.version
    if version is None:
        version = next_version(options.repository, options.name)
    directory = options.repository / options.name / str(version)
    check_version_is_free(directory)
    return version, directory


def _check_page_count(log: pd.DataFrame) -> None:
    if log.empty:
        raise ValueError("the log has no rows; pass a log with impressions")

    pages = log["request_id"].nunique()
    if pages < 2:
        raise ValueError(
            f"the log contains one page, request_id {log['request_id'].iloc[0]!r}; "
            "training holds out whole pages, so it needs at least 2 pages, and "
            "thousands of rows to fit a useful model"
        )


def _check_watched_clicks(train_log: pd.DataFrame) -> None:
    watched = (train_log["clicked"] == 1) & (train_log["watch_time_s"] > 0)
    if not watched.any():
        raise ValueError(
            f"the {len(train_log)} training rows have no click with "
            "watch_time_s > 0, so there is nothing to learn watch time from; "
            "pass a log with watched clicks"
        )


def _options_record(options: TrainOptions, fitted: FittedVariant) -> dict[str, Any]:
    record = {
        "seed": options.seed,
        "holdout_fraction": options.holdout_fraction,
        "fit": asdict(options.fit),
    }
    if options.variant == RESAMPLED:
        record["resample"] = asdict(options.resample)
    if options.variant == WEIGHTED_MLP:
        record["network"] = asdict(options.network)
    return record | fitted.record | {"train_rows": fitted.train_rows}
