"""Train every variant on simulated logs at several click rates and compare them.

For each click rate and seed, the simulator draws a log whose true expected
watch time is known for every impression. Each variant is trained on 80% of
its pages and exported to ONNX, and the exported graph scores the other 20%,
so the metrics describe the served artifact. The truth also gives the ratio
that the odds of a perfect weighted LR would reach,
`E[T / (1 - p)] / E[T]` over the holdout, next to `1 / (1 - click rate)`, and
each model's odds are compared with the true odds `E[T·click] / (1 - p)`.

The `resampled` rows also carry the metrics of the weighted LR whose positives
weigh T / unit, the loss that resampling minimises in expectation, so that the
report can tell the noise of replication from the effect of its unit.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT, FeatureSpec
from trainer.design import design_matrix
from trainer.evaluate import holdout_metrics
from trainer.export import run_graph
from trainer.features import fit_spec
from trainer.fit import FitOptions, linear_network
from trainer.graph import build_graph
from trainer.mlp import NetworkOptions
from trainer.network import Network
from trainer.outputs import (
    POISSON,
    RESAMPLED,
    VARIANTS,
    WEIGHTED,
    WEIGHTED_MLP,
    check_variant,
)
from trainer.parameters import rounded
from trainer.resample import ResampleOptions, fit_unit_weighted_lr
from trainer.selection import L2_GRID
from trainer.simulate import simulate_log
from trainer.split import split_by_request
from trainer.tensors import Tensors, log_tensors
from trainer.variants import VariantOptions, fit_variant

logger = logging.getLogger(__name__)

CLICK_RATES: tuple[float, ...] = (0.02, 0.1, 0.25, 0.45)
DEPTHS: tuple[tuple[int, ...], ...] = ((), (64,), (128, 64), (256, 128, 64))
"""Hidden layer sizes of the `weighted-mlp` runs; () is the output layer alone."""

HOLDOUT_METRICS: tuple[str, ...] = (
    "calibration_ratio",
    "max_decile_error",
    "mae_s",
    "xauc",
    "ndcg_at_10",
    "weighted_per_user_loss",
)
METRICS: tuple[str, ...] = (
    *HOLDOUT_METRICS,
    "train_seconds",
    "train_rows",
    "odds_over_true_odds",
    "inverse_odds_ratio",
)
"""Metrics of each run, averaged over seeds in the summary."""

UNIT_WEIGHTED = "unit_weighted"
"""Prefix of the `resampled` rows' metrics of the weighted LR whose positives
weigh T / unit, the loss that resampling minimises in expectation."""
UNIT_METRICS: tuple[str, ...] = (
    "calibration_ratio",
    "xauc",
    "ndcg_at_10",
    "weighted_per_user_loss",
)
RESAMPLED_FIELDS: tuple[str, ...] = (
    "unit_s",
    *(f"{UNIT_WEIGHTED}_{name}" for name in UNIT_METRICS),
)
"""Fields that only `resampled` rows have, averaged over seeds like METRICS."""


MIN_ROWS = 2000
"""Minimum impressions per log: at a 2% click rate about 40 clicks, split over
training and holdout pages."""


@dataclass(frozen=True)
class CompareOptions:
    """Sizes, seeds, click rates and variants of a comparison."""

    rows: int = 200_000
    """Impressions per simulated log, before the holdout split."""
    seeds: tuple[int, ...] = (1,)
    click_rates: tuple[float, ...] = CLICK_RATES
    variants: tuple[str, ...] = VARIANTS
    depths: tuple[tuple[int, ...], ...] = DEPTHS
    """Hidden layer sizes of each `weighted-mlp` run."""
    holdout_fraction: float = 0.2
    fit: FitOptions = field(default_factory=lambda: FitOptions(l2_grid=L2_GRID))
    """Fit options; by default each linear model chooses its l2 from L2_GRID."""
    resample: ResampleOptions = field(default_factory=ResampleOptions)
    network: NetworkOptions = field(default_factory=NetworkOptions)
    """Network options; `hidden` is replaced by each entry of `depths`."""

    def __post_init__(self) -> None:
        for variant in self.variants:
            check_variant(variant)
        if not self.seeds or not self.click_rates or not self.variants:
            raise ValueError(
                "a comparison needs at least one seed, click rate and variant, "
                f"got seeds {list(self.seeds)}, click rates "
                f"{list(self.click_rates)} and variants {list(self.variants)}"
            )
        for rate in self.click_rates:
            if not 0.0 < rate < 1.0:
                raise ValueError(f"click rate {rate} is outside (0, 1); use e.g. 0.45")
        if self.rows < MIN_ROWS:
            raise ValueError(
                f"--rows {self.rows} is too few to train and evaluate every "
                f"variant; use at least {MIN_ROWS}"
            )
        duplicates = sorted({v for v in self.variants if self.variants.count(v) > 1})
        if duplicates:
            raise ValueError(
                f"variants {duplicates} are listed more than once; name each once, "
                "and use --seeds for repeated runs"
            )
        if WEIGHTED_MLP in self.variants and not self.depths:
            raise ValueError(
                "weighted-mlp needs at least one hidden layer configuration; "
                "pass --hidden, e.g. --hidden 64"
            )


@dataclass(frozen=True)
class Model:
    """One model of the comparison: a variant and, for networks, its layers."""

    variant: str
    hidden: tuple[int, ...] | None = None

    @property
    def label(self) -> str:
        if self.hidden is None:
            return self.variant
        return f"{self.variant} {hidden_text(self.hidden)}"


def hidden_text(hidden: tuple[int, ...]) -> str:
    """Write hidden layer sizes as on the command line: `256,128,64` or `none`."""
    return ",".join(str(units) for units in hidden) or "none"


def models(options: CompareOptions) -> list[Model]:
    """List the models to train, in report order."""
    listed = []
    for variant in options.variants:
        if variant == WEIGHTED_MLP:
            listed += [Model(variant, hidden) for hidden in options.depths]
        else:
            listed.append(Model(variant))
    return listed


def run_comparison(options: CompareOptions) -> tuple[list[dict], list[dict]]:
    """Train and evaluate every model at every click rate and seed.

    Returns one row per (model, click rate, seed) and one row of the truth's
    odds bias per (click rate, seed).
    """
    runs, truths = [], []
    for seed in options.seeds:
        for click_rate in options.click_rates:
            log = simulate_log(rows=options.rows, click_rate=click_rate, seed=seed)
            train_log, holdout = split_by_request(log, options.holdout_fraction, seed)
            truths.append(truth_row(log, holdout, click_rate, seed))
            runs += _evaluate_models(options, train_log, holdout, click_rate, seed)
    return runs, truths


def truth_row(
    log: pd.DataFrame, holdout: pd.DataFrame, click_rate: float, seed: int
) -> dict[str, Any]:
    """Describe the simulated truth of one log: its click rate and odds bias."""
    probability = holdout["click_probability"].to_numpy(np.float64)
    expected = holdout["expected_watch_time_s"].to_numpy(np.float64)
    return {
        "click_rate": click_rate,
        "seed": seed,
        "observed_click_rate": float(log["clicked"].mean()),
        "inverse_one_minus_p": 1.0 / (1.0 - click_rate),
        "truth_odds_ratio": float(
            (expected / (1.0 - probability)).sum() / expected.sum()
        ),
    }


def _evaluate_models(
    options: CompareOptions,
    train_log: pd.DataFrame,
    holdout: pd.DataFrame,
    click_rate: float,
    seed: int,
) -> list[dict[str, Any]]:
    spec = fit_spec(train_log)
    # Raw tensors depend on the features, not on their bucket counts, so the
    # narrower spec of the network reads the same tensors.
    tensors = log_tensors(spec, holdout)
    rows = []
    for model in models(options):
        row = _evaluate(options, model, spec, train_log, holdout, tensors, seed)
        rows.append(row | {"click_rate": click_rate, "seed": seed})
        logger.info(
            "click rate %s seed %s %s: calibration %.3f, xauc %.4f, %.1f s",
            click_rate,
            seed,
            model.label,
            row["calibration_ratio"],
            row["xauc"],
            row["train_seconds"],
        )
    return rows


def _evaluate(
    options: CompareOptions,
    model: Model,
    spec: FeatureSpec,
    train_log: pd.DataFrame,
    holdout: pd.DataFrame,
    tensors: Tensors,
    seed: int,
) -> dict[str, Any]:
    network_options = options.network
    if model.hidden is not None:
        network_options = dataclasses.replace(network_options, hidden=model.hidden)
    variant_options = VariantOptions(
        model.variant, options.fit, options.resample, network_options
    )
    fitted = fit_variant(spec, train_log, variant_options, seed)
    outputs = _graph_outputs(fitted.network, tensors)
    predicted = outputs[WATCH_TIME_OUTPUT].astype(np.float64)
    metrics = holdout_metrics(holdout, predicted)

    row = {
        "variant": model.variant,
        "hidden": None if model.hidden is None else list(model.hidden),
        "model": model.label,
        **{name: metrics[name] for name in HOLDOUT_METRICS},
        "train_seconds": fitted.train_seconds,
        "train_rows": fitted.train_rows,
        "converged": fitted.converged,
        "calibration_by_decile": metrics["calibration_by_decile"],
        "odds_over_true_odds": None,
        "inverse_odds_ratio": None,
    }
    if model.variant != POISSON:
        logit = outputs[LOGIT_OUTPUT].astype(np.float64)
        row["odds_over_true_odds"] = odds_over_true_odds(holdout, logit)
        row["inverse_odds_ratio"] = inverse_odds_ratio(holdout, logit)
    if "l2" in fitted.record:
        row["l2"] = float(fitted.record["l2"])
    if model.variant == RESAMPLED:
        unit_s = float(fitted.record["unit_s"])
        fit = dataclasses.replace(options.fit, l2=row["l2"])
        row |= {"unit_s": unit_s}
        row |= _unit_weighted(fit, spec, train_log, holdout, tensors, unit_s)
    return row


def _graph_outputs(network: Network, tensors: Tensors) -> dict[str, np.ndarray]:
    """Score the holdout with the exported graph of `network`."""
    return run_graph(build_graph(rounded(network)), tensors)


def odds_over_true_odds(holdout: pd.DataFrame, logit: np.ndarray) -> float:
    """Return the sum of the model's odds over the sum of E[T·click] / (1 - p).

    The optimum of the weighted logistic loss over all functions has the
    odds E[T·click] / (1 - p) at every impression, so this ratio measures
    how much of those odds a fitted model reaches on the holdout.
    """
    probability = holdout["click_probability"].to_numpy(np.float64)
    expected = holdout["expected_watch_time_s"].to_numpy(np.float64)
    return float(np.exp(logit).sum() / (expected / (1.0 - probability)).sum())


def inverse_odds_ratio(holdout: pd.DataFrame, logit: np.ndarray) -> float:
    """Return the (1 - p)-weighted mean of true odds over the model's odds.

    For odds well above 1, the intercept's score equation of the weighted
    logistic loss makes this mean about 1 on the training log: the loss
    calibrates the inverse of the odds, not the odds.
    """
    probability = holdout["click_probability"].to_numpy(np.float64)
    expected = holdout["expected_watch_time_s"].to_numpy(np.float64)
    true_odds = expected / (1.0 - probability)
    ratio = true_odds / np.exp(logit)
    return float(np.average(ratio, weights=1.0 - probability))


def _unit_weighted(
    fit: FitOptions,
    spec: FeatureSpec,
    train_log: pd.DataFrame,
    holdout: pd.DataFrame,
    tensors: Tensors,
    unit_s: float,
) -> dict[str, float]:
    """Evaluate the weighted LR with the loss that resampling minimises."""
    features = design_matrix(spec, log_tensors(spec, train_log))
    solution = fit_unit_weighted_lr(features, train_log, fit, unit_s)
    network = linear_network(WEIGHTED, spec, [solution])
    predicted = _graph_outputs(network, tensors)[WATCH_TIME_OUTPUT]
    metrics = holdout_metrics(holdout, predicted.astype(np.float64))
    return {f"{UNIT_WEIGHTED}_{name}": metrics[name] for name in UNIT_METRICS}


def summarise(runs: list[dict], truths: list[dict]) -> dict[str, list[dict]]:
    """Average the runs over seeds: one row per (model, click rate).

    With two seeds or more, `spread` contains each metric's standard deviation
    over seeds.
    """
    frame = pd.DataFrame(runs)
    results = []
    for (label, click_rate), group in frame.groupby(
        ["model", "click_rate"], sort=False
    ):
        first = group.iloc[0]
        row = {
            "variant": first["variant"],
            "hidden": first["hidden"],
            "model": label,
            "click_rate": click_rate,
            "seeds": len(group),
        }
        row |= {name: _mean(group[name].tolist()) for name in METRICS}
        if first["variant"] == RESAMPLED:
            row |= {name: _mean(group[name].tolist()) for name in RESAMPLED_FIELDS}
        row["converged"] = bool(group["converged"].all())
        if "l2" in group:
            chosen = {value for value in group["l2"].tolist() if value == value}
            row["l2"] = sorted(chosen)
        curves = group["calibration_by_decile"].tolist()
        row["calibration_by_decile"] = [
            _mean(list(values)) for values in zip(*curves, strict=True)
        ]
        row["spread"] = {name: _spread(group[name].tolist()) for name in METRICS}
        results.append(row)

    truth = (
        pd.DataFrame(truths)
        .groupby("click_rate", sort=False)
        .mean()
        .drop(columns="seed")
    )
    odds_bias = [{"click_rate": rate, **values} for rate, values in truth.iterrows()]
    return {"results": results, "odds_bias": _plain_rows(odds_bias)}


def _mean(values: list[float | None]) -> float | None:
    """Average the values that exist; a metric is None where it is undefined."""
    present = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(present)) if present else None


def _spread(values: list[float | None]) -> float | None:
    """Return the standard deviation over seeds, or None for fewer than two."""
    present = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.std(present, ddof=1)) if len(present) > 1 else None


def _plain_rows(rows: list[dict]) -> list[dict]:
    return [{k: float(v) for k, v in row.items()} for row in rows]
