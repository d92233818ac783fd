"""Cross-request dynamic batching of onnxruntime calls, counted in candidate rows.

Request threads hand their encoded tensors to one batching thread and wait.
The thread takes the first waiting request, keeps adding requests of the same
model version while the batch stays within `max_rows` candidate rows and the
first request has waited less than `max_delay_s`, then runs the model once and
hands each request its slice of the outputs. A request with more rows than
`max_rows` runs alone, cut into slices of at most `max_rows` rows.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from app.contract import CANDIDATE_REQUEST_INPUT, PADDING_ID, FeatureSpec
from app.model import RankingModel

Tensors = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    model: RankingModel
    tensors: Tensors
    rows: int
    done: Future[Outputs] = field(default_factory=Future)


class Batcher:
    """Merges concurrent predictions into fewer onnxruntime calls."""

    def __init__(
        self,
        max_rows: int,
        max_delay_s: float,
        observe_rows: Callable[[int], None],
    ) -> None:
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self._observe_rows = observe_rows
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._held: _Job | None = None
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def predict(self, model: RankingModel, tensors: Tensors, rows: int) -> Outputs:
        """Return the model's outputs for these tensors, computed in some batch."""
        job = _Job(model, tensors, rows)
        self._jobs.put(job)
        return job.done.result()

    def close(self) -> None:
        """Stop the batching thread after the jobs already queued."""
        self._jobs.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            first = self._held or self._jobs.get()
            self._held = None
            if first is None:
                return
            batch = self._collect(first)
            self._execute(batch)

    def _collect(self, first: _Job) -> list[_Job]:
        batch, rows = [first], first.rows
        deadline = time.monotonic() + self.max_delay_s
        while rows < self.max_rows:
            remaining = deadline - time.monotonic()
            try:
                job = self._jobs.get(timeout=remaining) if remaining > 0 else None
            except queue.Empty:
                job = None
            if job is None or job.model is not first.model:
                self._held = job
                break
            if rows + job.rows > self.max_rows:
                self._held = job
                break
            batch.append(job)
            rows += job.rows
        return batch

    def _execute(self, batch: list[_Job]) -> None:
        try:
            model = batch[0].model
            if len(batch) == 1:
                outputs = [self._predict_in_slices(model, batch[0].tensors)]
            else:
                merged = merge_tensors(model.spec, [job.tensors for job in batch])
                outputs = split_outputs(
                    self._predict(model, merged), [job.rows for job in batch]
                )
        except Exception as error:  # noqa: BLE001 - each waiting request re-raises it
            for job in batch:
                job.done.set_exception(error)
            return

        for job, result in zip(batch, outputs, strict=True):
            job.done.set_result(result)

    def _predict(self, model: RankingModel, tensors: Tensors) -> Outputs:
        self._observe_rows(len(tensors[CANDIDATE_REQUEST_INPUT]))
        return model.predict(tensors)

    def _predict_in_slices(self, model: RankingModel, tensors: Tensors) -> Outputs:
        rows = len(tensors[CANDIDATE_REQUEST_INPUT])
        if rows <= self.max_rows:
            return self._predict(model, tensors)

        parts = [
            self._predict(model, slice_rows(model.spec, tensors, start, self.max_rows))
            for start in range(0, rows, self.max_rows)
        ]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def merge_tensors(spec: FeatureSpec, parts: list[Tensors]) -> Tensors:
    """Stack the tensors of several batches into one, fixing request indices."""
    merged: Tensors = {}
    for feature in spec.features:
        arrays = [part[feature.name] for part in parts]
        if arrays[0].ndim == 2:
            arrays = _pad_columns(arrays)
        merged[feature.name] = np.concatenate(arrays)

    offsets = np.cumsum([0] + [_context_rows(spec, p) for p in parts[:-1]])
    merged[CANDIDATE_REQUEST_INPUT] = np.concatenate(
        [
            p[CANDIDATE_REQUEST_INPUT] + offset
            for p, offset in zip(parts, offsets, strict=True)
        ]
    )
    return merged


def slice_rows(spec: FeatureSpec, tensors: Tensors, start: int, count: int) -> Tensors:
    """Return the candidate rows `start:start+count` with all context rows."""
    sliced = dict(tensors)
    stop = start + count
    for feature in spec.of_source("candidate"):
        sliced[feature.name] = tensors[feature.name][start:stop]
    sliced[CANDIDATE_REQUEST_INPUT] = tensors[CANDIDATE_REQUEST_INPUT][start:stop]
    return sliced


def split_outputs(outputs: Outputs, rows: list[int]) -> list[Outputs]:
    """Cut merged outputs back into one dictionary per batch."""
    bounds = np.cumsum(rows)[:-1]
    pieces = {name: np.split(values, bounds) for name, values in outputs.items()}
    return [{name: pieces[name][i] for name in outputs} for i in range(len(rows))]


def _context_rows(spec: FeatureSpec, tensors: Tensors) -> int:
    context = spec.of_source("context")
    if context:
        return len(tensors[context[0].name])
    return int(tensors[CANDIDATE_REQUEST_INPUT].max(initial=-1)) + 1


def _pad_columns(arrays: list[np.ndarray]) -> list[np.ndarray]:
    width = max(a.shape[1] for a in arrays)
    return [
        np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=PADDING_ID)
        for a in arrays
    ]
