"""Inputs and outputs of a model as the Open Inference Protocol describes them.

Names, element types and symbolic dimensions come from the manifest's
`inputs` and `outputs`, which the trainer copies from the graph. The role of
each input (numeric, categorical or id-list feature, or `candidate_request`)
and the longest id list come from the feature spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.contract import CANDIDATE_REQUEST_INPUT
from app.model import RankingModel

PLATFORM = "onnxruntime_onnx"
"""Platform name that Triton gives to models run by its onnxruntime backend."""

DATATYPES = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}
"""Protocol datatype of each numpy dtype name."""

INPUT_DTYPES = {"FP32": np.dtype("<f4"), "INT64": np.dtype("<i8")}
"""Little-endian numpy dtype of each datatype that a model input can have."""

CANDIDATE_REQUEST_ROLE = "candidate_request"

Dimension = str | int
"""A symbolic dimension such as "N", or a fixed size."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of the model."""

    name: str
    datatype: str
    dims: tuple[Dimension, ...]
    role: str = ""
    """Feature kind of an input, or `candidate_request`; empty for outputs."""

    max_length: int | None = None
    """Maximum number of ids in a row of an id-list input, from the feature spec."""

    def metadata(self) -> dict[str, Any]:
        """Return the tensor's metadata object, with -1 for symbolic dimensions."""
        shape = [dim if isinstance(dim, int) else -1 for dim in self.dims]
        return {"name": self.name, "datatype": self.datatype, "shape": shape}


@dataclass(frozen=True)
class ModelSignature:
    """The tensors of one model version."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dimension_names: dict[str, str]
    """Description of each symbolic dimension, for error messages."""

    request_dimension: str | None
    """Symbolic dimension of the context tensors' rows, R, if any."""

    @classmethod
    def from_model(cls, model: RankingModel) -> ModelSignature:
        """Build the signature from the model's manifest and feature spec.

        NOTE: the loader checks that `inputs` and `outputs` name the graph's
        tensors but not their `dtype` and `shape` entries; a missing entry
        raises KeyError here, which the /v2 routes turn into a 500.
        """
        inputs = tuple(_input_spec(model, entry) for entry in model.manifest["inputs"])
        outputs = _output_specs(model)
        request_dimension = _row_dimension(model, inputs, "context")
        candidate_dimension = _row_dimension(model, inputs, "candidate")
        names = _dimension_names(inputs, request_dimension, candidate_dimension)
        return cls(inputs, outputs, names, request_dimension)

    def describe_dimension(self, dim: str) -> str:
        """Return the symbolic dimension's name and what it counts."""
        description = self.dimension_names.get(dim)
        return dim if description is None else f"{dim} ({description})"


def _input_spec(model: RankingModel, entry: dict[str, Any]) -> TensorSpec:
    name = entry["name"]
    dims = tuple(entry["shape"])
    datatype = DATATYPES[entry["dtype"]]
    if name == CANDIDATE_REQUEST_INPUT:
        return TensorSpec(name, datatype, dims, CANDIDATE_REQUEST_ROLE)

    feature = model.spec.by_name(name)
    max_length = feature.transform.get("max_length")
    return TensorSpec(name, datatype, dims, feature.kind, max_length)


def _output_specs(model: RankingModel) -> tuple[TensorSpec, ...]:
    described = {entry["name"]: entry for entry in model.manifest["outputs"]}
    specs = []
    for name in model.output_names:
        entry = described.get(name)
        # The trainer writes every graph output into the manifest, and the
        # loader checks that the scores are float32 vectors, so this default
        # only describes an output that a hand-edited manifest left out.
        if entry is None:
            specs.append(TensorSpec(name, "FP32", ("N",)))
        else:
            specs.append(
                TensorSpec(name, DATATYPES[entry["dtype"]], tuple(entry["shape"]))
            )
    return tuple(specs)


def _row_dimension(
    model: RankingModel, inputs: tuple[TensorSpec, ...], source: str
) -> str | None:
    for spec in inputs:
        if spec.role == CANDIDATE_REQUEST_ROLE:
            continue
        if model.spec.by_name(spec.name).source == source and spec.dims:
            first = spec.dims[0]
            return first if isinstance(first, str) else None
    return None


def _dimension_names(
    inputs: tuple[TensorSpec, ...],
    request_dimension: str | None,
    candidate_dimension: str | None,
) -> dict[str, str]:
    names = {}
    for spec in inputs:
        for axis, dim in enumerate(spec.dims):
            if isinstance(dim, str) and axis > 0:
                names[dim] = f"the length of the rows of {spec.name}"
    if request_dimension is not None:
        names[request_dimension] = "the number of requests"
    if candidate_dimension is not None:
        names[candidate_dimension] = "the number of candidates"
    return names
