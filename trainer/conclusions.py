"""State what a comparison report shows, in sentences computed from its numbers.

Each sentence checks one expected effect of the mathematics against the
measured rows, and states whether the effect shows or not.
"""

from __future__ import annotations

import math
from typing import Any

from trainer.compare import UNIT_WEIGHTED, hidden_text
from trainer.outputs import POISSON, RESAMPLED, WEIGHTED, WEIGHTED_CLICK

CALIBRATION_TOLERANCE = 0.1
"""Largest |calibration ratio - 1| counted as calibrated."""

NOISE_MULTIPLE = 2.0
"""A mean difference within this many standard errors counts as noise."""


def conclusions(report: dict[str, Any]) -> list[str]:
    """Return one sentence per expected effect that the report can test."""
    rows = {(r["model"], r["click_rate"]): r for r in report["results"]}
    rates = sorted({r["click_rate"] for r in report["results"]})
    sentences = _weighted_against_resampled(report["runs"], rows, rates)
    sentences += _odds_bias(rows, report["odds_bias"], rates)
    for variant in (WEIGHTED_CLICK, POISSON):
        sentences += _calibrated(rows, rates, variant)
    sentences += _depths(report["results"], rates)
    return sentences


def _weighted_against_resampled(
    runs: list[dict[str, Any]], rows: dict, rates: list[float]
) -> list[str]:
    """Split resampled minus weighted into replication noise and the unit."""
    if not all((m, r) in rows for m in (WEIGHTED, RESAMPLED) for r in rates):
        return []

    sentences = []
    for metric, title in (("calibration_ratio", "calibration"), ("xauc", "xAUC")):
        unit_field = f"{UNIT_WEIGHTED}_{metric}"
        sentences.append(
            _paired_difference(
                runs,
                rates,
                (RESAMPLED, metric),
                (RESAMPLED, unit_field),
                f"replication noise in {title}, resampled minus the LR weighted "
                "as resampling weighs in expectation (positives T / unit)",
            )
        )
        sentences.append(
            _paired_difference(
                runs,
                rates,
                (RESAMPLED, unit_field),
                (WEIGHTED, metric),
                f"effect of the unit on {title}, that LR minus weighted",
            )
        )

    units = [rows[RESAMPLED, r]["unit_s"] for r in rates]
    row_ratios = [
        rows[RESAMPLED, r]["train_rows"] / rows[WEIGHTED, r]["train_rows"]
        for r in rates
    ]
    time_ratios = [
        rows[RESAMPLED, r]["train_seconds"] / rows[WEIGHTED, r]["train_seconds"]
        for r in rates
    ]
    sentences.append(
        f"resampled replicates at a unit of {_span(units, '{:.2f}')} s, reads "
        f"{_span(row_ratios, '{:.1f}')} times the rows of weighted and takes "
        f"{_span(time_ratios, '{:.1f}')} times its training time."
    )
    return sentences


def _paired_difference(
    runs: list[dict[str, Any]],
    rates: list[float],
    first: tuple[str, str],
    second: tuple[str, str],
    title: str,
) -> str:
    """Compare two (model, field) values on the same logs, seed by seed."""
    parts, noisy = [], []
    for rate in rates:
        differences = _differences(runs, rate, first, second)
        mean = sum(differences) / len(differences)
        error = _standard_error(differences)
        parts.append(f"{mean:+.4f} at p = {rate:g}")
        if error is not None:
            noisy.append(abs(mean) <= NOISE_MULTIPLE * error)

    text = f"{title}: " + ", ".join(parts)
    if not noisy:
        return text + " (one seed, so no estimate of the noise)."
    within = sum(noisy)
    return (
        text + f"; {within} of {len(noisy)} are within "
        f"{NOISE_MULTIPLE:g} standard errors of zero over seeds."
    )


def _differences(
    runs: list[dict[str, Any]],
    rate: float,
    first: tuple[str, str],
    second: tuple[str, str],
) -> list[float]:
    """Return first minus second for each seed that has both values."""
    values: dict[tuple[int, tuple[str, str]], float] = {}
    for run in runs:
        if run["click_rate"] != rate:
            continue
        for model, field in (first, second):
            if run["model"] == model and run.get(field) is not None:
                values[run["seed"], (model, field)] = run[field]
    seeds = sorted({seed for seed, _ in values})
    return [
        values[seed, first] - values[seed, second]
        for seed in seeds
        if (seed, first) in values and (seed, second) in values
    ]


def _standard_error(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return math.sqrt(variance / len(values))


def _odds_bias(
    rows: dict, odds_bias: list[dict[str, Any]], rates: list[float]
) -> list[str]:
    if not all((WEIGHTED, r) in rows for r in rates):
        return []

    ratios = [rows[WEIGHTED, r]["calibration_ratio"] for r in rates]
    truth = {row["click_rate"]: row["truth_odds_ratio"] for row in odds_bias}
    rising = all(b > a for a, b in zip(ratios, ratios[1:], strict=False))
    listed = ", ".join(
        f"{ratio:.3f} at p = {rate:g} (1 / (1 - p) = {1 / (1 - rate):.3f}, "
        f"truth {truth[rate]:.3f})"
        for rate, ratio in zip(rates, ratios, strict=True)
    )
    trend = "rises with every step of" if rising else "does not rise steadily with"
    reached = ", ".join(
        f"{rows[WEIGHTED, r]['odds_over_true_odds']:.3f} at p = {r:g}" for r in rates
    )
    inverse = ", ".join(
        f"{rows[WEIGHTED, r]['inverse_odds_ratio']:.3f} at p = {r:g}" for r in rates
    )
    return [
        f"weighted's calibration ratio {trend} the click rate: {listed}. "
        "'truth' is E[T / (1 - p)] / E[T] on the holdout, the ratio that odds "
        "equal to E[T·click] / (1 - p) at every impression would reach.",
        f"weighted's odds sum to {reached} of the sum of the true odds "
        "E[T·click] / (1 - p) on the holdout, while the (1 - p)-weighted mean of "
        f"true over fitted odds is {inverse}.",
    ]


def _calibrated(rows: dict, rates: list[float], variant: str) -> list[str]:
    if not all((variant, r) in rows for r in rates):
        return []

    ratios = {rate: rows[variant, rate]["calibration_ratio"] for rate in rates}
    missed = {
        rate: ratio
        for rate, ratio in ratios.items()
        if abs(ratio - 1.0) > CALIBRATION_TOLERANCE
    }
    span = _span(list(ratios.values()), "{:.3f}")
    if not missed:
        return [
            f"{variant} stays within {CALIBRATION_TOLERANCE:.0%} of the true mean "
            f"at every click rate (calibration ratio {span})."
        ]
    listed = ", ".join(f"{ratio:.3f} at p = {rate:g}" for rate, ratio in missed.items())
    return [
        f"{variant} misses {CALIBRATION_TOLERANCE:.0%} calibration at "
        f"{len(missed)} of {len(rates)} click rates: {listed}."
    ]


def _depths(results: list[dict[str, Any]], rates: list[float]) -> list[str]:
    networks = [r for r in results if r["hidden"] is not None]
    if len({tuple(r["hidden"]) for r in networks}) < 2:
        return []

    parts = []
    for rate in rates:
        at_rate = [r for r in networks if r["click_rate"] == rate]
        best = min(at_rate, key=lambda r: r["weighted_per_user_loss"])
        parts.append(
            f"{hidden_text(tuple(best['hidden']))} at p = {rate:g} "
            f"({best['weighted_per_user_loss']:.4f})"
        )
    return [
        "lowest weighted per-user loss among the network depths: "
        + ", ".join(parts)
        + "."
    ]


def _span(values: list[float], form: str) -> str:
    low, high = min(values), max(values)
    if form.format(low) == form.format(high):
        return form.format(low)
    return f"{form.format(low)} to {form.format(high)}"
