"""Write a comparison as report.json, report.md and PNG figures."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from trainer.compare import CompareOptions, hidden_text, summarise
from trainer.conclusions import conclusions
from trainer.figures import write_figures

REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"
PACKAGES = ("numpy", "scipy", "scikit-learn", "onnxruntime")


def write_report(
    directory: Path,
    options: CompareOptions,
    runs: list[dict[str, Any]],
    truths: list[dict[str, Any]],
    command: str,
) -> dict[str, Any]:
    """Summarise the runs and write the JSON, Markdown and figures to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    report = {
        "command": command,
        "settings": dataclasses.asdict(options),
        "environment": environment(),
        **summarise(runs, truths),
        "runs": runs,
        "truths": truths,
    }
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    (directory / REPORT_JSON).write_text(text, encoding="utf-8")
    (directory / REPORT_MARKDOWN).write_text(markdown(report), encoding="utf-8")
    write_figures(directory, report)
    return report


def environment() -> dict[str, Any]:
    """Describe the machine, the package versions and the date of the run."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: metadata.version(name) for name in PACKAGES},
    }


def _cpu_name() -> str:
    # platform.processor() is empty on most Linux systems, and /proc/cpuinfo
    # names the model there.
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def markdown(report: dict[str, Any]) -> str:
    """Render the report's tables and conclusions as Markdown."""
    settings, machine = report["settings"], report["environment"]
    lines = [
        "# Training variants compared on simulated logs",
        "",
        f"`{report['command']}`",
        "",
        f"{settings['rows']:,} impressions per log, "
        f"{1 - settings['holdout_fraction']:.0%} of the pages for training and "
        f"the rest held out; seeds {', '.join(map(str, settings['seeds']))}. "
        f"{machine['cpu']}, {machine['cpus']} CPUs, Python {machine['python']}, "
        f"{machine['date']}. Metrics are measured on the holdout with the "
        "exported ONNX graph, against the simulator's true expected watch time. "
        "With several seeds, each value is the mean and ± the standard "
        "deviation over seeds.",
        "",
        "## Results",
        "",
        *_results_table(report["results"]),
        "",
        "## Odds bias",
        "",
        *_odds_bias_table(report),
        "",
    ]
    replication = _replication_table(report["results"])
    if replication:
        lines += ["## Replication and its unit", "", *replication, ""]
    depths = _depth_table(report["results"])
    if depths:
        lines += ["## Depth of the weighted network", "", *depths, ""]
    lines += ["## Conclusions", ""]
    lines += [f"- {sentence}" for sentence in conclusions(report)]
    return "\n".join(lines) + "\n"


COLUMNS = (
    ("calibration_ratio", "calibration", "{:.3f}"),
    ("max_decile_error", "max decile error", "{:.3f}"),
    ("mae_s", "MAE (s)", "{:.2f}"),
    ("xauc", "xAUC", "{:.4f}"),
    ("ndcg_at_10", "NDCG@10", "{:.4f}"),
    ("weighted_per_user_loss", "weighted per-user loss", "{:.4f}"),
    ("train_seconds", "train (s)", "{:.1f}"),
    ("train_rows", "train rows", "{:,.0f}"),
)


def _results_table(results: list[dict[str, Any]]) -> list[str]:
    header = ["model", "click rate", *(title for _, title, _ in COLUMNS), "l2"]
    lines = [_row(header), _row(["---"] * len(header))]
    for row in sorted(results, key=lambda r: r["click_rate"]):
        cells = [row["model"], f"{row['click_rate']:g}"]
        cells += [_cell(row, name, form) for name, _, form in COLUMNS]
        cells.append(", ".join(f"{value:g}" for value in row.get("l2") or []))
        lines.append(_row(cells))
    return lines


def _cell(row: dict[str, Any], name: str, form: str) -> str:
    value, spread = row[name], row["spread"][name]
    if value is None:
        return "n/a"
    text = form.format(value)
    if spread is not None and name != "train_rows":
        text += " ± " + form.format(spread)
    return text


def _odds_bias_table(report: dict[str, Any]) -> list[str]:
    weighted = {
        r["click_rate"]: r for r in report["results"] if r["variant"] == "weighted"
    }
    header = [
        "click rate p",
        "observed click rate",
        "1 / (1 - p)",
        "truth E[T / (1 - p)] / E[T]",
        "weighted calibration",
        "weighted odds / true odds",
        "(1 - p)-weighted mean of true / weighted odds",
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    for truth in report["odds_bias"]:
        rate = truth["click_rate"]
        measured = weighted.get(rate)
        lines.append(
            _row(
                [
                    f"{rate:g}",
                    f"{truth['observed_click_rate']:.4f}",
                    f"{truth['inverse_one_minus_p']:.3f}",
                    f"{truth['truth_odds_ratio']:.3f}",
                    "n/a"
                    if measured is None
                    else _cell(measured, "calibration_ratio", "{:.3f}"),
                    "n/a"
                    if measured is None
                    else _cell(measured, "odds_over_true_odds", "{:.3f}"),
                    "n/a"
                    if measured is None
                    else _cell(measured, "inverse_odds_ratio", "{:.3f}"),
                ]
            )
        )
    return lines


def _replication_table(results: list[dict[str, Any]]) -> list[str]:
    weighted = {r["click_rate"]: r for r in results if r["variant"] == "weighted"}
    resampled = [r for r in results if r["variant"] == "resampled"]
    if not resampled:
        return []

    header = ["click rate", "unit (s)", "rows"]
    for title in ("calibration", "xAUC"):
        header += [f"{title}: weighted", "LR weighted T / unit", "resampled"]
    lines = [_row(header), _row(["---"] * len(header))]
    for row in sorted(resampled, key=lambda r: r["click_rate"]):
        base = weighted.get(row["click_rate"])
        cells = [
            f"{row['click_rate']:g}",
            f"{row['unit_s']:.2f}",
            f"{row['train_rows']:,.0f}",
        ]
        for name, form in (("calibration_ratio", "{:.3f}"), ("xauc", "{:.4f}")):
            cells += [
                "n/a" if base is None else form.format(base[name]),
                form.format(row[f"unit_weighted_{name}"]),
                form.format(row[name]),
            ]
        lines.append(_row(cells))
    return lines


def _depth_table(results: list[dict[str, Any]]) -> list[str]:
    networks = [r for r in results if r["hidden"] is not None]
    if not networks:
        return []
    rates = sorted({r["click_rate"] for r in networks})
    depths = list(dict.fromkeys(tuple(r["hidden"]) for r in networks))
    header = ["hidden layers", *(f"loss at p = {rate:g}" for rate in rates)]
    lines = [_row(header), _row(["---"] * len(header))]
    for hidden in depths:
        cells = [hidden_text(hidden)]
        for rate in rates:
            row = next(
                r
                for r in networks
                if tuple(r["hidden"]) == hidden and r["click_rate"] == rate
            )
            cells.append(_cell(row, "weighted_per_user_loss", "{:.4f}"))
        lines.append(_row(cells))
    return lines


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
