"""Fit any training variant by name into the common network form.

| variant | model | served expected watch time |
|---|---|---|
| `weighted` | LR, positives weighted by watch time | exp(logit) |
| `resampled` | LR on positives replicated by watch time | exp(logit) |
| `poisson` | Poisson regression of watch time, log link | exp(logit) |
| `weighted+click` | weighted LR plus an LR of the click | exp(logit) (1 - p̂) |
| `weighted-mlp` | ReLU network under the weighted LR's loss | exp(logit) |
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from app.contract import FeatureSpec
from trainer.design import design_matrix
from trainer.fit import (
    FitOptions,
    Solution,
    click_loss,
    fit_click_lr,
    fit_weighted_lr,
    linear_network,
    solver_record,
    weighted_loss,
)
from trainer.mlp import NetworkOptions, fit_mlp
from trainer.network import Network
from trainer.outputs import (
    POISSON,
    RESAMPLED,
    WEIGHTED,
    WEIGHTED_CLICK,
    WEIGHTED_MLP,
    check_variant,
)
from trainer.poisson import fit_poisson, poisson_loss, poisson_record
from trainer.resample import (
    ResampleOptions,
    fit_resampled_lr,
    fit_unit_weighted_lr,
    resample_unit,
    unit_weighted_loss,
)
from trainer.selection import Fit, Loss, Selection, fit_with_selected_l2, select_l2
from trainer.tensors import log_tensors


@dataclass(frozen=True)
class VariantOptions:
    """The variant to fit, and the options of each kind of fit."""

    variant: str = WEIGHTED
    fit: FitOptions = field(default_factory=FitOptions)
    resample: ResampleOptions = field(default_factory=ResampleOptions)
    network: NetworkOptions = field(default_factory=NetworkOptions)

    def __post_init__(self) -> None:
        check_variant(self.variant)


@dataclass(frozen=True)
class FittedVariant:
    """A fitted variant with what the manifest and the comparison record of it."""

    network: Network
    record: dict[str, Any]
    """Solver, iterations and variant-specific facts for the manifest."""
    train_rows: int
    """Rows the fitting algorithm read: replicated rows for `resampled`."""
    train_seconds: float
    """Wall time of building the design matrix and fitting."""

    @property
    def converged(self) -> bool:
        return bool(self.record["converged"])


def fit_variant(
    spec: FeatureSpec, log: pd.DataFrame, options: VariantOptions, seed: int
) -> FittedVariant:
    """Fit `options.variant` on the training log `log` over the feature spec."""
    started = time.perf_counter()
    if options.variant == WEIGHTED_MLP:
        network, record = fit_mlp(spec, log, options.fit, options.network, seed)
        rows = int(record["fit_rows"])
    else:
        features = design_matrix(spec, log_tensors(spec, log))
        network, record, rows = _fit_linear(spec, features, log, options, seed)
    seconds = time.perf_counter() - started
    return FittedVariant(network, record, rows, seconds)


def _fit_linear(
    spec: FeatureSpec,
    features: Any,
    log: pd.DataFrame,
    options: VariantOptions,
    seed: int,
) -> tuple[Network, dict[str, Any], int]:
    variant = options.variant
    if variant == WEIGHTED:
        solution, record = _selected(
            fit_weighted_lr, weighted_loss, features, log, options, seed
        )
        return linear_network(variant, spec, [solution]), record, len(log)

    if variant == RESAMPLED:
        return _fit_resampled(spec, features, log, options, seed)

    if variant == POISSON:
        solution, selection = fit_with_selected_l2(
            fit_poisson, poisson_loss, features, log, options.fit, seed
        )
        chosen = _chosen(options.fit, selection)
        record = poisson_record(solution, log, chosen) | _selection_record(selection)
        return linear_network(variant, spec, [solution]), record, len(log)

    weighted, record = _selected(
        fit_weighted_lr, weighted_loss, features, log, options, seed
    )
    click, click_record = _selected(
        fit_click_lr, click_loss, features, log, options, seed
    )
    record |= {
        "converged": weighted.converged and click.converged,
        "click_model": click_record,
    }
    network = linear_network(WEIGHTED_CLICK, spec, [weighted, click])
    return network, record, len(log)


def _selected(
    fit: Fit,
    loss: Loss,
    features: Any,
    log: pd.DataFrame,
    options: VariantOptions,
    seed: int,
) -> tuple[Solution, dict[str, Any]]:
    """Fit one logistic regression and describe it with its chosen penalty."""
    solution, selection = fit_with_selected_l2(
        fit, loss, features, log, options.fit, seed
    )
    record = solver_record(solution) | {"l2": _chosen(options.fit, selection).l2}
    return solution, record | _selection_record(selection)


def _fit_resampled(
    spec: FeatureSpec,
    features: Any,
    log: pd.DataFrame,
    options: VariantOptions,
    seed: int,
) -> tuple[Network, dict[str, Any], int]:
    """Choose the penalty on the loss that resampling minimises, then resample."""
    unit_s = resample_unit(log, options.resample)

    def fit_unit(
        features: Any, log: pd.DataFrame, fit: FitOptions, initial: Solution | None
    ) -> Solution:
        return fit_unit_weighted_lr(features, log, fit, unit_s, initial)

    def unit_loss(solution: Solution, features: Any, log: pd.DataFrame) -> float:
        return unit_weighted_loss(solution, features, log, unit_s)

    start, selection = None, None
    if options.fit.l2_grid:
        selection, start = select_l2(
            fit_unit, unit_loss, features, log, options.fit, seed
        )
    chosen = _chosen(options.fit, selection)
    solution, record = fit_resampled_lr(features, log, chosen, unit_s, seed, start)
    record |= {"l2": chosen.l2} | _selection_record(selection)
    network = linear_network(RESAMPLED, spec, [solution])
    return network, record, int(record["rows"])


def _chosen(options: FitOptions, selection: Selection | None) -> FitOptions:
    if selection is None:
        return options
    return dataclasses.replace(options, l2=selection.l2)


def _selection_record(selection: Selection | None) -> dict[str, Any]:
    if selection is None:
        return {}
    return {"validation_losses": selection.record()["validation_losses"]}
