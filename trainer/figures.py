"""PNG figures of a comparison report, drawn with matplotlib's object API.

The figures use `matplotlib.figure.Figure` directly rather than pyplot, so
drawing them changes no global state and needs no display.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from trainer.outputs import WEIGHTED, WEIGHTED_MLP

CALIBRATION_FIGURE = "calibration_by_decile.png"
ODDS_BIAS_FIGURE = "odds_bias.png"
DPI = 120
PANEL_COLUMNS = 3


def write_figures(directory: Path, report: dict[str, Any]) -> list[Path]:
    """Draw both figures of `report` into `directory` and return their paths."""
    paths = [directory / CALIBRATION_FIGURE, directory / ODDS_BIAS_FIGURE]
    calibration_figure(report["results"]).savefig(paths[0], dpi=DPI)
    odds_bias_figure(report["results"], report["odds_bias"]).savefig(paths[1], dpi=DPI)
    return paths


def calibration_figure(results: list[dict[str, Any]]) -> Figure:
    """Plot predicted over true watch time per decile: a panel per model."""
    labels = list(dict.fromkeys(row["model"] for row in results))
    rates = sorted({row["click_rate"] for row in results})
    rows = math.ceil(len(labels) / PANEL_COLUMNS)
    columns = min(PANEL_COLUMNS, len(labels))

    figure = Figure(figsize=(4.2 * columns, 3.4 * rows), layout="constrained")
    axes = list(figure.subplots(rows, columns, sharey=True, squeeze=False).flat)
    for axis, label in zip(axes, labels, strict=False):
        for rate in rates:
            row = _find(results, label, rate)
            if row is not None:
                _plot_deciles(axis, row["calibration_by_decile"], f"p = {rate:g}")
        _frame_calibration(axis, label)

    for unused in axes[len(labels) :]:
        unused.set_visible(False)
    axes[0].legend(title="click rate", fontsize="small")
    figure.suptitle("Calibration by decile of the prediction, holdout")
    return figure


def _plot_deciles(axis: Any, ratios: list[float | None], label: str) -> None:
    deciles = np.arange(1, len(ratios) + 1)
    values = np.array([np.nan if r is None else r for r in ratios], dtype=float)
    axis.plot(deciles, values, marker="o", markersize=3, label=label)


def _frame_calibration(axis: Any, title: str) -> None:
    axis.axhspan(0.9, 1.1, color="0.85", zorder=0)
    axis.axhline(1.0, color="0.3", linewidth=0.8)
    _label_log_axis(axis)
    axis.set_title(title)
    axis.set_xlabel("decile of the prediction")
    axis.set_ylabel("mean predicted / mean true")
    axis.set_xticks(range(1, 11))


def odds_bias_figure(
    results: list[dict[str, Any]], odds_bias: list[dict[str, Any]]
) -> Figure:
    """Plot the weighted models' calibration ratios against the click rate."""
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    axis = figure.subplots()
    rates = np.array([row["click_rate"] for row in odds_bias])
    grid = np.linspace(0.0, rates.max() * 1.05, 200)

    axis.plot(grid, 1.0 / (1.0 - grid), color="0.2", label="1 / (1 - p)")
    axis.plot(
        rates,
        [row["truth_odds_ratio"] for row in odds_bias],
        "s--",
        color="0.5",
        label="truth: E[T / (1 - p)] / E[T]",
    )
    for label in _weighted_models(results):
        _plot_ratio(axis, results, label)

    axis.axhline(1.0, color="0.3", linewidth=0.8)
    _label_log_axis(axis)
    axis.set_xlabel("click rate p (mean click probability)")
    axis.set_ylabel("mean predicted / mean true watch time")
    axis.set_title("Odds bias of the weighted logistic loss, holdout")
    axis.legend(fontsize="small")
    return figure


def _label_log_axis(axis: Any) -> None:
    """Use a log scale with plain labels at 1, 2 and 5 times powers of ten."""
    axis.set_yscale("log")
    axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.yaxis.set_minor_formatter(NullFormatter())


def _weighted_models(results: list[dict[str, Any]]) -> list[str]:
    """Return `weighted` and the deepest `weighted-mlp` present, if any."""
    labels = [row["model"] for row in results if row["variant"] == WEIGHTED][:1]
    networks = [row for row in results if row["variant"] == WEIGHTED_MLP]
    if networks:
        deepest = max(networks, key=lambda row: (len(row["hidden"]), row["hidden"]))
        labels.append(deepest["model"])
    return labels


def _plot_ratio(axis: Any, results: list[dict[str, Any]], label: str) -> None:
    rows = sorted(
        (row for row in results if row["model"] == label),
        key=lambda row: row["click_rate"],
    )
    spread = [row["spread"]["calibration_ratio"] or 0.0 for row in rows]
    axis.errorbar(
        [row["click_rate"] for row in rows],
        [row["calibration_ratio"] for row in rows],
        yerr=spread,
        marker="o",
        capsize=3,
        label=label,
    )


def _find(results: list[dict[str, Any]], label: str, rate: float) -> dict | None:
    for row in results:
        if row["model"] == label and row["click_rate"] == rate:
            return row
    return None
