"""The model version a worker serves, and how it changes without a restart.

The served model is one attribute, replaced in a single assignment, so a
request that reads it once is scored entirely by one version. New versions are
found by polling the repository and on an admin request. A version that fails
its checks is rejected with a logged reason and the current model keeps
serving; it is tried again only after its files change.

Workers of one server share a runtime directory. An admin reload in one worker
bumps a generation file there, and every worker reloads when it sees a new
generation, so all of them converge on the same version within one tick.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.errors import ModelLoadError
from app.metrics import ServiceMetrics
from app.model import ModelLocation, RankingModel, load_model, locate_model
from app.settings import Settings

GENERATION_FILE = "reload-generation"

logger = logging.getLogger(__name__)

Fingerprint = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ReloadResult:
    """Outcome of one reload attempt."""

    result: str
    """`loaded`, `unchanged` or `rejected`."""
    name: str | None
    version: int | None
    reason: str | None = None


def fingerprint(location: ModelLocation) -> Fingerprint:
    """Return modification time and size of the version's files.

    A file that is still being copied has another fingerprint than the finished
    one, so a version rejected half-copied is tried again once complete.
    """
    stamps = []
    for path in (location.manifest_path, location.graph_path):
        try:
            status = path.stat()
            stamps.append((status.st_mtime_ns, status.st_size))
        except OSError:
            stamps.append((0, -1))
    return tuple(stamps)


class ModelManager:
    """Owns the served model of one worker process."""

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        runtime_dir: Path | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self.intra_op_threads = settings.resolved_intra_op_threads()
        self.onnxruntime_spinning = settings.onnxruntime_spinning
        self._runtime_dir = runtime_dir
        self._current: RankingModel | None = None
        self._current_fingerprint: Fingerprint | None = None
        self._rejected: dict[Path, tuple[Fingerprint, str]] = {}
        self._repository_error: str | None = None
        self._reload_lock = threading.Lock()
        # Held while this worker bumps the generation, so its own watcher
        # cannot read the new token before it is recorded as seen.
        self._generation_lock = threading.Lock()
        self._seen_generation = self._read_generation()

    @property
    def current(self) -> RankingModel | None:
        """Return the served model, or None before the first load."""
        return self._current

    def load_initial(self) -> RankingModel:
        """Load the configured model; raise ModelLoadError when it is invalid."""
        location = self._locate()
        model = self._load(location)
        self._install(model, fingerprint(location))
        return model

    def reload(self) -> ReloadResult:
        """Serve the version the repository and settings select, if it is valid."""
        with self._reload_lock:
            return self._reload_locked()

    def _reload_locked(self) -> ReloadResult:
        try:
            location = self._locate()
        except ModelLoadError as error:
            reason = str(error)
            if reason == self._repository_error:
                # Logged and counted once, so a repository that stays broken
                # does not count a rejection at every poll.
                return ReloadResult("rejected", None, None, reason)
            self._repository_error = reason
            return self._reject(None, None, reason)
        self._repository_error = None

        stamp = fingerprint(location)
        if self._is_current(location, stamp):
            return self._result("unchanged")
        rejected = self._rejected.get(location.directory)
        if rejected is not None and rejected[0] == stamp:
            # Already logged and counted; the files have not changed since.
            reason = f"unchanged since it was rejected: {rejected[1]}"
            return ReloadResult("rejected", location.name, location.version, reason)

        try:
            model = self._load(location)
        except ModelLoadError as error:
            return self._reject(location, stamp, str(error))

        previous = self._current
        self._install(model, stamp)
        self._metrics.model_reloads.labels("loaded").inc()
        logger.info(
            "now serving model %s version %s, replacing version %s",
            model.name,
            model.version,
            previous.version if previous else None,
        )
        return self._result("loaded")

    def request_reload_everywhere(self) -> ReloadResult:
        """Reload here and tell the other workers of this server to reload too."""
        result = self.reload()
        path = self._generation_path()
        if path is not None:
            with self._generation_lock:
                self._seen_generation = _bump_generation(path)
        return result

    def poll_generation(self) -> bool:
        """Return True once per generation bump made by any worker."""
        with self._generation_lock:
            generation = self._read_generation()
            if generation == self._seen_generation:
                return False
            self._seen_generation = generation
            return True

    def _locate(self) -> ModelLocation:
        settings = self._settings
        return locate_model(
            settings.model_repository, settings.model_name, settings.model_version
        )

    def _load(self, location: ModelLocation) -> RankingModel:
        return load_model(location, self.intra_op_threads, self.onnxruntime_spinning)

    def _install(self, model: RankingModel, stamp: Fingerprint) -> None:
        previous = self._current
        self._current = model
        self._current_fingerprint = stamp
        self._rejected.pop(model.location.directory, None)
        if previous is not None:
            # Set to 0 rather than removed: in multiprocess mode a removed
            # label set stays in the worker's sample file.
            self._metrics.model_info.labels(previous.name, str(previous.version)).set(0)
        self._metrics.model_info.labels(model.name, str(model.version)).set(1)

    def _is_current(self, location: ModelLocation, stamp: Fingerprint) -> bool:
        current = self._current
        return (
            current is not None
            and current.location.directory == location.directory
            and self._current_fingerprint == stamp
        )

    def _reject(
        self, location: ModelLocation | None, stamp: Fingerprint | None, reason: str
    ) -> ReloadResult:
        if location is not None and stamp is not None:
            self._rejected[location.directory] = (stamp, reason)
        self._metrics.model_reloads.labels("rejected").inc()
        current = self._current
        logger.error(
            "rejected model update, still serving version %s: %s",
            current.version if current else None,
            reason,
        )
        name = location.name if location else None
        version = location.version if location else None
        return ReloadResult("rejected", name, version, reason)

    def _result(self, result: str) -> ReloadResult:
        current = self._current
        return ReloadResult(
            result,
            current.name if current else None,
            current.version if current else None,
        )

    def _generation_path(self) -> Path | None:
        if self._runtime_dir is None:
            return None
        return self._runtime_dir / GENERATION_FILE

    def _read_generation(self) -> str:
        path = self._generation_path()
        if path is None:
            return ""
        try:
            return path.read_text(encoding="ascii")
        except OSError:
            return ""


def _bump_generation(path: Path) -> str:
    # A unique token, written to a temporary file and renamed, so readers
    # never see a partial write and two bumps never look alike.
    token = f"{os.getpid()}-{time.time_ns()}"
    staging = path.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(token, encoding="ascii")
    staging.replace(path)
    return token
