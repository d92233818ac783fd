"""CPU capacity of the process, read from its cgroup before the host's count.

In a container with a CPU limit, `os.cpu_count()` still reports the host's
cores, so thread pools sized from it oversubscribe the quota and get
throttled. The quota is in `cpu.max` (cgroup v2) or `cpu.cfs_quota_us` and
`cpu.cfs_period_us` (cgroup v1).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")

logger = logging.getLogger(__name__)


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """Return the cgroup's CPU limit in cores, or None when there is none."""
    limit = _cgroup_v2_limit(root / "cpu.max")
    if limit is None:
        limit = _cgroup_v1_limit(
            root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        )
    return limit


def _cgroup_v2_limit(path: Path) -> float | None:
    try:
        quota, period = path.read_text(encoding="ascii").split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return _ratio(quota, period)


def _cgroup_v1_limit(quota_path: Path, period_path: Path) -> float | None:
    try:
        quota = quota_path.read_text(encoding="ascii").strip()
        period = period_path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    if quota.startswith("-"):
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        cores = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return cores if cores > 0 else None


def available_cpus(root: Path = CGROUP_ROOT) -> float:
    """Return the cores this process may use: affinity, capped by the cgroup."""
    cores = float(len(os.sched_getaffinity(0)))
    limit = cgroup_cpu_limit(root)
    return min(cores, limit) if limit is not None else cores


def default_intra_op_threads(workers: int, root: Path = CGROUP_ROOT) -> int:
    """Return onnxruntime threads per worker so workers × threads ≤ the cores.

    A fractional quota rounds down, but every worker gets at least one thread.
    """
    return max(1, math.floor(available_cpus(root) / max(1, workers)))
