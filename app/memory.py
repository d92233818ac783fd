"""A cap on glibc's malloc arenas, so worker memory stays flat.

glibc gives each thread that allocates its own arena, up to eight per core,
and freed memory in one arena cannot serve another. Rankings run in
FastAPI's thread pool and allocate arrays of a different size every time,
so with many arenas the resident size of a worker kept growing: from 207 MB
to 260 MB in a 20-minute soak (`python -m load_tests.bench --soak
--soak-rate 20 --soak-mix 1-5000`, 2 workers, on a shared 2-core machine).
With two arenas, a 7-minute run of the same soak went from 182 MB to 189 MB.

Freed memory that stays inside an arena still counts as resident, so each
worker also calls glibc's malloc_trim periodically to return free pages to
the kernel. The objects that live as long as the worker, such as modules,
routes and the model, are frozen out of the garbage collector's full scans.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
from collections.abc import Callable

MALLOC_ARENAS = 2
M_ARENA_MAX = -8
"""mallopt parameter of glibc's <malloc.h> that caps the number of arenas."""

logger = logging.getLogger(__name__)


def limit_malloc_arenas() -> None:
    """Cap arenas in this process now and in the worker processes it starts.

    Workers read MALLOC_ARENA_MAX when they start; this process has started
    already, so it calls mallopt. A value the deployment set is kept.
    """
    configured = os.environ.setdefault("MALLOC_ARENA_MAX", str(MALLOC_ARENAS))
    library = ctypes.util.find_library("c")
    if library is None:
        return

    try:
        libc = ctypes.CDLL(library)
        applied = libc.mallopt(M_ARENA_MAX, int(configured))
    except (OSError, AttributeError, ValueError):
        applied = 0
    if not applied:
        logger.debug("mallopt(M_ARENA_MAX) is not available on this C library")


def freeze_startup_objects() -> int:
    """Exclude the objects alive after start-up from the collector's scans.

    A full collection scans every tracked object, and after start-up most of
    them live as long as the worker. In-process, 500-candidate rankings took
    up to 55 to 68 ms when a full collection ran within them, and at most 10 ms
    with those objects frozen. Returns the number of objects frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def malloc_trimmer() -> Callable[[], bool] | None:
    """Return a function that hands free heap pages back, or None without glibc.

    glibc's malloc_trim(0) releases the free memory at the top of each arena
    and, since glibc 2.8, the free whole pages inside them. It returns 1 when
    it released any memory.
    """
    library = ctypes.util.find_library("c")
    if library is None:
        return None

    try:
        trim = ctypes.CDLL(library).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: bool(trim(0))
