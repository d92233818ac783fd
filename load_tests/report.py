"""Ratios, target checks and the markdown summary of a benchmark's results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RSS_FLAT_TOLERANCE = 0.10
"""Largest relative change of a worker's RSS after the first minute of a soak."""

MIN_NAIVE_RATIO = 4.0
MIN_FLOOR_SHARE = 0.5


@dataclass(frozen=True)
class RateTarget:
    """A sustained rate that a candidate mix must reach within a p99 bound."""

    mix: str
    p99_bound_ms: float
    rate: float


RATE_TARGETS = (RateTarget("500", 25.0, 1200.0), RateTarget("50", 5.0, 2000.0))


def add_ratios(results: dict[str, Any]) -> None:
    """Add to each sweep its throughput relative to the naive endpoint and the floor."""
    naive = _find_server(results, "naive")
    for server in results["servers"]:
        for mix, sweep in server["sweeps"].items():
            naive_sweep = naive["sweeps"].get(mix) if naive else None
            floor = results["floor"].get(mix)
            sweep["ratio_to_naive"] = _ratio(
                sweep["sustained_candidates_per_s"],
                naive_sweep["sustained_candidates_per_s"] if naive_sweep else None,
            )
            sweep["peak_ratio_to_naive"] = _ratio(
                sweep["peak_candidates_per_s"],
                naive_sweep["peak_candidates_per_s"] if naive_sweep else None,
            )
            floor_rate = floor["candidates_per_s"] if floor else None
            sweep["sustained_share_of_floor"] = _ratio(
                sweep["sustained_candidates_per_s"], floor_rate
            )
            sweep["peak_share_of_floor"] = _ratio(
                sweep["peak_candidates_per_s"], floor_rate
            )


def _find_server(results: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((s for s in results["servers"] if s["kind"] == kind), None)


def _ratio(value: float, reference: float | None) -> float | None:
    if not reference:
        return None
    return round(value / reference, 3)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Check each service configuration against the targets its run measured."""
    checks = []
    for server in results["servers"]:
        if server["kind"] != "service":
            continue
        sweeps = server["sweeps"]
        for target in RATE_TARGETS:
            sweep = sweeps.get(target.mix)
            if sweep and sweep["p99_bound_ms"] == target.p99_bound_ms:
                checks.append(_check_rate(server["label"], target, sweep))
        if "500" in sweeps and _find_server(results, "naive"):
            checks.append(_check_naive_ratio(server["label"], sweeps["500"]))
        for mix, sweep in sweeps.items():
            if sweep.get("peak_share_of_floor") is not None:
                checks.append(_check_floor_share(server["label"], mix, sweep))
    return checks


def _check_rate(
    label: str, target: RateTarget, sweep: dict[str, Any]
) -> dict[str, Any]:
    rate = sweep["sustained_rate"]
    return {
        "server": label,
        "target": f"{target.mix} candidates: {target.rate:,.0f} req/s "
        f"({target.rate * int(target.mix):,.0f} candidates/s) at p99 <= "
        f"{target.p99_bound_ms:g} ms",
        "measured": f"{rate:,.0f} req/s ({sweep['sustained_candidates_per_s']:,.0f} "
        "candidates/s)",
        "met": rate >= target.rate,
        "gap": _gap(rate, target.rate, "req/s"),
    }


def _check_naive_ratio(label: str, sweep: dict[str, Any]) -> dict[str, Any]:
    ratio = sweep["ratio_to_naive"]
    measured = "naive sustained no rate" if ratio is None else f"{ratio:.2f}x"
    return {
        "server": label,
        "target": f"500 candidates: {MIN_NAIVE_RATIO:g}x the naive endpoint's "
        "sustained throughput at the same p99 bound",
        "measured": f"{measured} (peak throughput: "
        f"{_times(sweep['peak_ratio_to_naive'])})",
        "met": ratio is not None and ratio >= MIN_NAIVE_RATIO,
        "gap": "no ratio: the naive endpoint passed no step"
        if ratio is None
        else _gap(ratio, MIN_NAIVE_RATIO, "x"),
    }


def _check_floor_share(label: str, mix: str, sweep: dict[str, Any]) -> dict[str, Any]:
    share = sweep["peak_share_of_floor"]
    return {
        "server": label,
        "target": f"{mix} candidates: peak throughput >= "
        f"{MIN_FLOOR_SHARE:.0%} of the in-process floor",
        "measured": f"{share:.0%} (sustained at the bound: "
        f"{sweep['sustained_share_of_floor']:.0%})",
        "met": share >= MIN_FLOOR_SHARE,
        "gap": _gap(share * 100, MIN_FLOOR_SHARE * 100, "points"),
    }


def _gap(measured: float, target: float, unit: str) -> str:
    if measured >= target:
        return ""
    if target and measured > 0:
        return f"{target - measured:,.2f} {unit} short, {target / measured:.1f}x away"
    return f"{target - measured:,.2f} {unit} short"


def check_soak(soak: dict[str, Any]) -> dict[str, Any]:
    """Return whether each worker's RSS stayed within 10% of its first-minute value."""
    changes = {}
    for pid, series in soak["worker_rss_mb"].items():
        baseline = series[0]
        changes[pid] = round(max(abs(v - baseline) / baseline for v in series), 4)
    flat = bool(changes) and max(changes.values()) <= RSS_FLAT_TOLERANCE
    return {"max_relative_change": changes, "flat": flat}


def render_markdown(results: dict[str, Any]) -> str:
    """Return the human-readable summary of a benchmark run."""
    lines = [f"# Benchmark of {results['started_at']}", ""]
    lines += _machine_lines(results)
    for mix in results["mixes"]:
        lines += _mix_section(results, mix)
    if results.get("targets"):
        lines += _targets_section(results["targets"])
    for server in results["servers"]:
        for mix, summary in server.get("profiles", {}).items():
            lines += _profile_section(server["label"], mix, summary)
    return "\n".join(lines) + "\n"


def _machine_lines(results: dict[str, Any]) -> list[str]:
    machine = results["machine"]
    return [
        f"- machine: {machine['cpu_model']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB, Python {machine['python']}",
        f"- load before: {results['load_before']}",
        f"- load after: {results['load_after']}",
        f"- load generator: {results['generator']['event_loop']} event loop, "
        f"{results['options']['connections']} connections, peak CPU "
        f"{results['generator']['peak_cpu_cores']} cores",
        "",
    ]


def _mix_section(results: dict[str, Any], mix: str) -> list[str]:
    sweeps = [
        (s["label"], s["sweeps"][mix]) for s in results["servers"] if mix in s["sweeps"]
    ]
    bound = sweeps[0][1]["p99_bound_ms"] if sweeps else None
    lines = [f"## {mix} candidates per request, p99 bound {bound} ms", ""]
    lines += [
        "| server | sustained req/s | candidates/s | p50 ms | p99 ms | p99.9 ms | "
        "vs naive | peak candidates/s | peak vs naive | peak vs floor | "
        "server CPU cores | worker RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, sweep in sweeps:
        lines.append(_sweep_row(label, sweep))
    floor = results["floor"].get(mix)
    if floor:
        latency = floor["latency_ms"]
        lines.append(
            f"| in-process floor ({floor['processes']} processes) | "
            f"{floor['requests_per_s']:,.0f} | {floor['candidates_per_s']:,.0f} | "
            f"{latency['p50']} | {latency['p99']} | {latency['p99.9']} | | "
            f"{floor['candidates_per_s']:,.0f} | | 100% | | |"
        )
    lines.append("")
    for label, sweep in sweeps:
        lines += _steps_table(label, sweep)
    return lines


def _sweep_row(label: str, sweep: dict[str, Any]) -> str:
    latency = sweep["sustained_latency_ms"] or {}
    best = _sustained_step(sweep)
    cpu = best["service_cpu_cores"] if best else ""
    rss = ", ".join(f"{v:.0f}" for v in best["worker_rss_mb"].values()) if best else ""
    return (
        f"| {label} | {sweep['sustained_rate']:,.0f} | "
        f"{sweep['sustained_candidates_per_s']:,.0f} | {latency.get('p50', '')} | "
        f"{latency.get('p99', '')} | {latency.get('p99.9', '')} | "
        f"{_times(sweep.get('ratio_to_naive'))} | "
        f"{sweep['peak_candidates_per_s']:,.0f} | "
        f"{_times(sweep.get('peak_ratio_to_naive'))} | "
        f"{_percent(sweep.get('peak_share_of_floor'))} | {cpu} | {rss} |"
    )


def _sustained_step(sweep: dict[str, Any]) -> dict[str, Any] | None:
    passing = [s for s in sweep["steps"] if s["passed"]]
    return max(passing, key=lambda s: s["offered_rate"]) if passing else None


def _steps_table(label: str, sweep: dict[str, Any]) -> list[str]:
    lines = [
        f"Steps of {label}:",
        "",
        "| offered req/s | achieved req/s | candidates/s | p50 ms | p95 ms | p99 ms | "
        "p99.9 ms | errors | server CPU | server CPU ms per request | "
        "generator CPU | other CPU | send lag p99 ms | passed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for step in sweep["steps"]:
        latency = step["latency_ms"]
        lines.append(
            f"| {step['offered_rate']:g} | {step['achieved_rate']:,.1f} | "
            f"{step['candidates_per_s']:,.0f} | {latency['p50']} | {latency['p95']} | "
            f"{latency['p99']} | {latency['p99.9']} | {_errors(step)} | "
            f"{step['service_cpu_cores']} | {_cpu_ms_per_request(step)} | "
            f"{step['generator_cpu_cores']} | "
            f"{step.get('other_cpu_cores', '')} | {step['send_lag_ms']['p99']} | "
            f"{'yes' if step['passed'] else 'no'} |"
        )
    lines.append("")
    return lines


def _cpu_ms_per_request(step: dict[str, Any]) -> str:
    # CPU time excludes time spent waiting for a core, so other processes'
    # load changes it less than it changes latency.
    if not step["achieved_rate"]:
        return ""
    return f"{step['service_cpu_cores'] / step['achieved_rate'] * 1000:.1f}"


def _errors(step: dict[str, Any]) -> str:
    if not step["errors"]:
        return "0"
    parts = [f"{step['timeouts']} timeouts"] if step["timeouts"] else []
    if step["connection_errors"]:
        parts.append(f"{step['connection_errors']} connection")
    parts += [f"{n} x {status}" for status, n in step["statuses"].items()]
    return ", ".join(parts)


def _targets_section(targets: list[dict[str, Any]]) -> list[str]:
    lines = ["## Targets", "", "| server | target | measured | met | gap |"]
    lines.append("|---|---|---|---|---|")
    for check in targets:
        met = "yes" if check["met"] else "no"
        lines.append(
            f"| {check['server']} | {check['target']} | {check['measured']} | "
            f"{met} | {check['gap']} |"
        )
    lines.append("")
    return lines


def _profile_section(label: str, mix: str, summary: dict[str, Any]) -> list[str]:
    lines = [
        f"## Profile of {label}, {mix} candidates at {summary['offered_rate']:g} req/s",
        "",
        f"{summary['samples']} py-spy samples of all workers.",
        "",
        "| function | self | total |",
        "|---|---|---|",
    ]
    totals = {entry["function"]: entry["share"] for entry in summary["total"]}
    for entry in summary["self"]:
        total = totals.get(entry["function"])
        lines.append(
            f"| `{entry['function']}` | {entry['share']:.1%} | {_percent(total)} |"
        )
    lines += ["", "Most inclusive:", ""]
    lines += [f"- `{e['function']}`: {e['share']:.1%}" for e in summary["total"]]
    lines.append("")
    return lines


def render_soak_markdown(soak: dict[str, Any]) -> str:
    """Return the human-readable summary of a soak run."""
    verdict = soak["rss_check"]
    lines = [
        f"# Soak of {soak['started_at']}",
        "",
        f"- {soak['minutes']} minutes at {soak['rate']:g} req/s, "
        f"{soak['mix']} candidates per request",
        f"- load before: {soak['load_before']}",
        f"- load after: {soak['load_after']}",
        f"- worker RSS flat within {RSS_FLAT_TOLERANCE:.0%} after the first minute: "
        f"{'yes' if verdict['flat'] else 'no'} (largest change "
        f"{max(verdict['max_relative_change'].values(), default=0):.1%})",
        "",
        "| minute | achieved req/s | p50 ms | p99 ms | errors | "
        + " | ".join(f"RSS MB {pid}" for pid in soak["worker_rss_mb"])
        + " |",
        "|---|---|---|---|---|" + "---|" * len(soak["worker_rss_mb"]),
    ]
    for index, step in enumerate(soak["steps"], start=1):
        rss = " | ".join(f"{v:.0f}" for v in step["worker_rss_mb"].values())
        lines.append(
            f"| {index} | {step['achieved_rate']:,.1f} | {step['latency_ms']['p50']} | "
            f"{step['latency_ms']['p99']} | {step['errors']} | {rss} |"
        )
    return "\n".join(lines) + "\n"


def _times(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"
