"""Stepped open-loop load on one server, and the highest rate it sustains.

A sweep offers each rate for a bounded step and stops after a number of
consecutive overloaded steps, which had errors or achieved less than 99% of
the offered rate. Steps whose p99 latency exceeds the bound do not stop it,
so the latency curve reaches the server's capacity. A step passes when it
is not overloaded and keeps its p99 latency within the bound.
The sweep then bisects between the highest passing rate and the failed rate
above it, and reports the highest passing rate as the sustained throughput.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil

from load_tests.loadgen import StepPlan
from load_tests.servers import LOOPBACK, ProcessTree, stop_process

MIN_ACHIEVED_SHARE = 0.99
"""Share of the offered rate a passing step must achieve."""

BYTES_PER_MB = 1024 * 1024

IDLE_CPU_CORES = 0.2
"""CPU use of the server, in cores, below which it counts as idle between steps."""

IDLE_PROBE_S = 0.5
IDLE_WAIT_LIMIT_S = 120.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepOptions:
    """Rates, step length and stopping rules of every sweep of a run."""

    rates: tuple[float, ...]
    step_s: float
    timeout_s: float
    settle_s: float
    warmup_s: float
    stop_after_overloaded: int
    refine_steps: int


class GeneratorProcess:
    """The load generator running in its own process, driven step by step."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "load_tests.loadgen"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._send(config)
        self.event_loop = self._receive()["event_loop"]

    def run(self, plan: StepPlan) -> dict[str, Any]:
        """Run one step in the generator and return its result."""
        self._send(plan.__dict__)
        return self._receive()

    def close(self) -> None:
        """End the generator by closing its input, and wait for it."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop_process(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _send(self, message: dict[str, Any]) -> None:
        if self.process.stdin is None:
            raise RuntimeError("the load generator's input is closed")
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise RuntimeError(
                f"the load generator exited with status {self.process.poll()}"
            )
        return json.loads(line)


def generator_config(
    port: int,
    features: list[dict[str, Any]],
    mixes: list[str],
    connections: int,
    bodies: int,
    seed: int,
) -> dict[str, Any]:
    """Return the configuration line of a generator aimed at one loopback server."""
    return {
        "host": LOOPBACK,
        "port": port,
        "path": "/v1/rank",
        "features": features,
        "mixes": mixes,
        "connections": connections,
        "bodies": bodies,
        "seed": seed,
    }


def measured_step(
    generator: GeneratorProcess, tree: ProcessTree, plan: StepPlan
) -> dict[str, Any]:
    """Run one step and add the server's CPU use and worker memory to its result."""
    cpu_before = tree.cpu_seconds()
    machine_before = _machine_busy_seconds()
    wall_before = time.perf_counter()
    result = generator.run(plan)
    wall_s = time.perf_counter() - wall_before

    service_cores = (tree.cpu_seconds() - cpu_before) / wall_s
    machine_cores = (_machine_busy_seconds() - machine_before) / wall_s
    result["service_cpu_cores"] = round(service_cores, 3)
    # What neither the server nor the generator used is other processes' load,
    # which on a shared machine competes with the server for the same cores.
    other_cores = machine_cores - service_cores - result["generator_cpu_cores"]
    result["other_cpu_cores"] = round(max(0.0, other_cores), 3)
    result["worker_rss_mb"] = {
        str(pid): round(rss / BYTES_PER_MB, 1)
        for pid, rss in tree.worker_rss_bytes().items()
    }
    return result


def _machine_busy_seconds() -> float:
    # On Linux, guest time is already part of user time, so it is not added.
    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system
    return busy + getattr(times, "irq", 0.0) + getattr(times, "softirq", 0.0)


def step_passes(step: dict[str, Any], bound_ms: float) -> bool:
    """Return whether a step kept the p99 bound with no error and full throughput."""
    p99 = step["latency_ms"]["p99"]
    return (
        step["errors"] == 0
        and step["achieved_rate"] >= MIN_ACHIEVED_SHARE * step["offered_rate"]
        and p99 is not None
        and p99 <= bound_ms
    )


def is_overloaded(step: dict[str, Any]) -> bool:
    """Return whether a step had errors or fell short of the offered rate."""
    short = step["achieved_rate"] < MIN_ACHIEVED_SHARE * step["offered_rate"]
    return step["errors"] > 0 or short


def run_sweep(
    generator: GeneratorProcess,
    tree: ProcessTree,
    mix: str,
    bound_ms: float,
    options: SweepOptions,
) -> dict[str, Any]:
    """Step through the rates for one candidate mix and find the sustained rate."""
    _warm_up(generator, mix, options)
    steps: list[dict[str, Any]] = []
    overloaded_steps = 0
    for rate in options.rates:
        step = _run_and_judge(generator, tree, mix, rate, bound_ms, options)
        steps.append(step)
        overloaded_steps = overloaded_steps + 1 if is_overloaded(step) else 0
        if overloaded_steps >= options.stop_after_overloaded:
            break

    for _ in range(options.refine_steps):
        rate = _next_bisection_rate(steps)
        if rate is None:
            break
        steps.append(_run_and_judge(generator, tree, mix, rate, bound_ms, options))

    steps.sort(key=lambda step: step["offered_rate"])
    return {"mix": mix, "p99_bound_ms": bound_ms, **sustained(steps), "steps": steps}


def _warm_up(generator: GeneratorProcess, mix: str, options: SweepOptions) -> None:
    # The first requests of a process pay for lazy imports and allocations.
    if options.warmup_s > 0:
        rate = min(options.rates)
        generator.run(StepPlan(rate, options.warmup_s, options.timeout_s, mix))
        time.sleep(options.settle_s)


def _run_and_judge(
    generator: GeneratorProcess,
    tree: ProcessTree,
    mix: str,
    rate: float,
    bound_ms: float,
    options: SweepOptions,
) -> dict[str, Any]:
    plan = StepPlan(rate, options.step_s, options.timeout_s, mix)
    step = measured_step(generator, tree, plan)
    step["passed"] = step_passes(step, bound_ms)
    logger.info(
        "%s candidates at %s req/s: achieved %s, p99 %s ms, %s errors, %s",
        mix,
        rate,
        step["achieved_rate"],
        step["latency_ms"]["p99"],
        step["errors"],
        "passed" if step["passed"] else "failed",
    )
    wait_until_idle(tree, options.settle_s)
    return step


def wait_until_idle(tree: ProcessTree, settle_s: float) -> None:
    """Wait at least `settle_s`, then until the server's CPU use drops to idle.

    Requests that timed out on the client still run on the server, so after
    an overloaded step it can stay busy for many seconds, which would count
    against the next step.
    """
    time.sleep(settle_s)
    deadline = time.monotonic() + IDLE_WAIT_LIMIT_S
    while time.monotonic() < deadline:
        before = tree.cpu_seconds()
        time.sleep(IDLE_PROBE_S)
        if (tree.cpu_seconds() - before) / IDLE_PROBE_S < IDLE_CPU_CORES:
            return
    logger.warning("the server was still busy %s s after the step", IDLE_WAIT_LIMIT_S)


def _next_bisection_rate(steps: list[dict[str, Any]]) -> float | None:
    passed = [s["offered_rate"] for s in steps if s["passed"]]
    best = max(passed, default=0.0)
    above = [
        s["offered_rate"] for s in steps if not s["passed"] and s["offered_rate"] > best
    ]
    if not above:
        return None
    rate = float(round((best + min(above)) / 2))
    tried = {s["offered_rate"] for s in steps}
    return None if rate in tried or rate <= 0 else rate


def sustained(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the highest passing step's rate and figures, zero if none passed."""
    passing = [step for step in steps if step["passed"]]
    peak = max((step["candidates_per_s"] for step in steps), default=0.0)
    if not passing:
        return {
            "sustained_rate": 0.0,
            "sustained_candidates_per_s": 0.0,
            "sustained_latency_ms": None,
            "peak_candidates_per_s": peak,
        }
    best = max(passing, key=lambda step: step["offered_rate"])
    return {
        "sustained_rate": best["offered_rate"],
        "sustained_candidates_per_s": best["candidates_per_s"],
        "sustained_latency_ms": best["latency_ms"],
        "peak_candidates_per_s": peak,
    }
