"""Admission control of ranking requests, so that overload gets a fast 429.

Rankings (`/v1/rank`) and V2 inferences (`/v2/models/.../infer`) share one
controller per worker, so that one bound holds for both. Each worker runs
at most `concurrency` requests at a time, and the others wait for a ranking
thread in arrival order. A request is admitted only while
fewer than `max_in_flight` requests are admitted. While a ranking thread is
free it is admitted at once, because nothing queues ahead of it. Otherwise it
is admitted only if the rankings ahead of it and its own are estimated to
finish before its deadline. Else it is rejected at once with 429 and
Retry-After, because a ranking that arrives after the page was built is worth
nothing, and queueing it would also delay every request behind it.

The estimate needs no model of the hardware. Each ranking's service time is
measured, and a least-squares line of service time on body size, weighted
towards recent rankings, predicts the service time of the next bodies. Each
kind of request has its own line, because a V2 body, binary tensors or JSON
arrays, contains far more candidates per byte than a `/v1/rank` body.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.to_thread

from app.errors import Overloaded

Result = TypeVar("Result")

RECENT_WEIGHT = 0.05
"""Weight of the newest service time in the estimate; older ones decay by 1 - it."""

WARMUP_RANKINGS = 10
"""Rankings measured before the estimate is used; until then only the cap applies."""


class ServiceTimeEstimator:
    """Predicts the service time of a ranking from its body size in bytes.

    It fits `seconds = intercept + slope * bytes` by least squares with
    exponentially decaying weights, so it follows changes of load and of
    the model. When recent bodies all have about one size, the line is
    undetermined, and the estimate scales the mean time by the size.
    """

    def __init__(self, recent_weight: float = RECENT_WEIGHT) -> None:
        self.recent_weight = recent_weight
        self.count = 0
        self._weight = 0.0
        self._x = 0.0
        self._y = 0.0
        self._xx = 0.0
        self._xy = 0.0

    def observe(self, body_bytes: int, seconds: float) -> None:
        """Add the measured service time of one ranking."""
        keep = 1.0 - self.recent_weight
        x = float(body_bytes)
        self._weight = keep * self._weight + 1.0
        self._x = keep * self._x + x
        self._y = keep * self._y + seconds
        self._xx = keep * self._xx + x * x
        self._xy = keep * self._xy + x * seconds
        self.count += 1

    def estimate(self, body_bytes: int) -> float | None:
        """Return the predicted service time in seconds, or None before warm-up."""
        if self.count < WARMUP_RANKINGS:
            return None

        mean_x = self._x / self._weight
        mean_y = self._y / self._weight
        variance = self._xx / self._weight - mean_x * mean_x
        slope = 0.0
        # Sizes within about 1% of each other cannot separate the per-byte
        # cost from the per-request cost.
        if variance > (0.01 * mean_x) ** 2:
            covariance = self._xy / self._weight - mean_x * mean_y
            slope = max(0.0, covariance / variance)
        intercept = mean_y - slope * mean_x
        if intercept < 0.0 or slope == 0.0:
            return mean_y * body_bytes / max(mean_x, 1.0)
        return intercept + slope * body_bytes


@dataclass(frozen=True)
class Ticket:
    """An admitted request: its kind, size, predicted service time and deadline."""

    workload: str
    """Kind of request, which selects the service time estimator."""
    body_bytes: int
    cost_s: float
    deadline: float
    """`time.monotonic()` value by which the response is due."""
    queued: bool
    """Whether every ranking thread was busy at admission, so the request waits."""


class AdmissionController:
    """Admits the requests of one worker and runs them in arrival order.

    Admission and release run on the event loop, so the counters need no
    lock. The estimator of each workload learns from each of its requests
    after the thread returns.
    """

    def __init__(
        self,
        concurrency: int,
        max_in_flight: int,
        on_change: Callable[[int], None] = lambda in_flight: None,
    ) -> None:
        self.concurrency = concurrency
        self.max_in_flight = max_in_flight
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.estimators: defaultdict[str, ServiceTimeEstimator] = defaultdict(
            ServiceTimeEstimator
        )
        """Service time estimator of each workload, such as `rank`."""
        self.in_flight = 0
        self.queued_cost_s = 0.0
        """Predicted service time of every admitted request not yet finished."""
        self._on_change = on_change

    def admit(self, body_bytes: int, deadline: float, workload: str = "rank") -> Ticket:
        """Admit a request or raise Overloaded with a Retry-After hint.

        `workload` names the kind of request, whose service times are
        estimated apart from those of other kinds.
        """
        now = time.monotonic()
        if self.in_flight >= self.max_in_flight:
            raise Overloaded(
                f"the server has {self.in_flight} ranking and inference requests "
                "in flight, its maximum set by WATCHTIME_MAX_IN_FLIGHT; retry "
                "after the Retry-After seconds, or send the request to another "
                "replica",
                retry_after_s=self._retry_after_s(),
            )

        cost_s = self.estimators[workload].estimate(body_bytes)
        queued = self.in_flight >= self.concurrency
        if cost_s is not None and queued:
            completion = now + self.queued_cost_s / self.concurrency + cost_s
            if completion > deadline:
                raise self._late(completion - now, deadline - now)
        ticket = Ticket(workload, body_bytes, cost_s or 0.0, deadline, queued)
        self.in_flight += 1
        self.queued_cost_s += ticket.cost_s
        self._on_change(self.in_flight)
        return ticket

    async def run(self, ticket: Ticket, ranking: Callable[[], Result]) -> Result:
        """Run `ranking` in a ranking thread when its turn comes, then release it.

        Raises Overloaded, without ranking, when the request waited in the
        queue so long that its deadline can no longer be met.
        """
        try:
            result, seconds = await anyio.to_thread.run_sync(
                self._run_timed, ticket, ranking, limiter=self.limiter
            )
        finally:
            self.in_flight -= 1
            self.queued_cost_s = max(0.0, self.queued_cost_s - ticket.cost_s)
            self._on_change(self.in_flight)
        self.estimators[ticket.workload].observe(ticket.body_bytes, seconds)
        return result

    def _run_timed(
        self, ticket: Ticket, ranking: Callable[[], Result]
    ) -> tuple[Result, float]:
        started = time.monotonic()
        if ticket.queued and started + ticket.cost_s > ticket.deadline:
            raise self._late(ticket.cost_s, ticket.deadline - started)
        result = ranking()
        return result, time.monotonic() - started

    def _late(self, needed_s: float, remaining_s: float) -> Overloaded:
        return Overloaded(
            f"the server is overloaded: the request would take about "
            f"{needed_s * 1000:.0f} ms, and its deadline is in "
            f"{max(remaining_s, 0.0) * 1000:.0f} ms; retry after the Retry-After "
            "seconds or on another replica, or send a longer deadline in "
            "X-Request-Deadline-Ms",
            retry_after_s=self._retry_after_s(),
        )

    def _retry_after_s(self) -> int:
        # The time for the queue to drain, in the whole seconds HTTP allows.
        return max(1, math.ceil(self.queued_cost_s / self.concurrency))
