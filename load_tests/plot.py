"""PNG plot of p50 and p99 latency against offered load, one panel per mix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # Renders to files only, so no display is needed.

import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)


def plot_latency(results: dict[str, Any], output: Path) -> None:
    """Draw each server's p50 and p99 per step, the floor, and the p99 bound."""
    mixes = results["mixes"]
    figure, axes = plt.subplots(
        1, len(mixes), figsize=(6.5 * len(mixes), 4.8), squeeze=False
    )
    for axis, mix in zip(axes[0], mixes, strict=True):
        _draw_mix(axis, results, mix)

    # One legend below the panels, so that no panel's curves are covered.
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=4, fontsize="small")
    figure.suptitle(f"Latency against offered load, {results['started_at']}")
    rows_of_legend = -(-len(labels) // 4)
    figure.tight_layout(rect=(0, 0.045 * rows_of_legend, 1, 1))
    figure.savefig(output, dpi=110)
    plt.close(figure)


def _draw_mix(axis: Any, results: dict[str, Any], mix: str) -> None:
    bound = None
    for index, server in enumerate(results["servers"]):
        sweep = server["sweeps"].get(mix)
        if sweep is None:
            continue
        bound = sweep["p99_bound_ms"]
        steps = [s for s in sweep["steps"] if s["latency_ms"]["p99"] is not None]
        rates = [s["offered_rate"] for s in steps]
        color = f"C{index}"
        axis.plot(
            rates,
            [s["latency_ms"]["p99"] for s in steps],
            "o-",
            color=color,
            label=f"{server['label']} p99",
        )
        axis.plot(
            rates,
            [s["latency_ms"]["p50"] for s in steps],
            "s--",
            color=color,
            label=f"{server['label']} p50",
        )

    _draw_floor(axis, results["floor"].get(mix))
    if bound is not None:
        axis.axhline(bound, color="red", linestyle=":", label="p99 bound")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("offered load (requests/s)")
    axis.set_ylabel("latency (ms)")
    title = f"{mix} candidates per request"
    if bound is not None:
        title += f", p99 bound {bound:g} ms"
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)


def _draw_floor(axis: Any, floor: dict[str, Any] | None) -> None:
    # The floor runs closed-loop, so it is drawn as its latencies up to the
    # rate it reached rather than as a curve against offered load.
    if floor is None:
        return
    capacity = floor["requests_per_s"]
    latency = floor["latency_ms"]
    axis.hlines(latency["p99"], 1, capacity, colors="black", label="floor p99")
    axis.hlines(
        latency["p50"],
        1,
        capacity,
        colors="black",
        linestyles="dashed",
        label="floor p50",
    )
    axis.axvline(capacity, color="black", alpha=0.3, label="floor capacity")
