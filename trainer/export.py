"""Write a trained model to the model repository: model.onnx and manifest.json."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd

from app.contract import (
    HASH_ALGORITHM,
    LOGIT_OUTPUT,
    MANIFEST_FORMAT,
    FeatureSpec,
)
from trainer.features import split_id_list
from trainer.graph import LOGIT_CAP
from trainer.network import Network
from trainer.parameters import PARAMETERS_FILE
from trainer.reference import logit_range, reference_outputs
from trainer.tensors import Tensors, request_tensors

logger = logging.getLogger(__name__)

GOLDEN_REQUESTS = 3
GOLDEN_CANDIDATES = 8
LOGIT_FLOOR = -87.0
"""Lowest logit whose float32 exp is still a normal number, about 1.6e-38."""

PARITY_TOLERANCE = 1e-5
"""Largest relative difference allowed between the graph and the numpy model."""

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""Pattern of model names that stay one directory inside the repository.

The service skips directories whose name starts with a dot and serves only
versions named by positive integers, so the trainer writes only such names.
"""

STAGING_PREFIX = ".staging-"
"""Start of the directory a version is written to before it gets its name."""


class ExportError(RuntimeError):
    """The exported graph disagrees with the model it was built from."""


def check_model_name(name: str) -> None:
    """Raise ValueError unless `name` is one safe directory name."""
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(
            f"invalid model name {name!r}; use letters, digits, '.', '_' "
            "and '-', starting with a letter or digit, e.g. watchtime"
        )


def check_version(version: int) -> None:
    """Raise ValueError unless `version` is a positive integer."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            f"invalid model version {version!r}; use an integer of 1 or more"
        )


def next_version(repository: Path, name: str) -> int:
    """Return one more than the highest integer version of `name`, or 1."""
    versions = [int(p.name) for p in (repository / name).glob("*") if p.name.isdigit()]
    return max(versions, default=0) + 1


def check_version_is_free(directory: Path) -> None:
    """Raise FileExistsError when a version directory already exists."""
    if directory.exists():
        raise FileExistsError(
            f"{directory} already exists; choose another --version or remove it"
        )


def run_graph(model: onnx.ModelProto | Path, tensors: Tensors) -> dict[str, np.ndarray]:
    """Run the graph with onnxruntime and return all its outputs by name."""
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    feeds = {i.name: tensors[i.name] for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def golden_requests(spec: FeatureSpec, log: pd.DataFrame) -> list[dict[str, Any]]:
    """Turn the first pages of `log` into `/v1/rank` bodies.

    The last request omits every optional candidate feature of its second
    candidate and the whole context, so replaying it also checks defaults.
    """
    page_ids = log["request_id"].drop_duplicates().iloc[:GOLDEN_REQUESTS]
    requests = [
        _request_body(spec, log[log["request_id"] == page].head(GOLDEN_CANDIDATES))
        for page in page_ids
    ]
    if requests and len(requests[-1]["candidates"]) > 1:
        requests[-1]["context"] = {}
        requests[-1]["candidates"][1]["features"] = {}
    return requests


def _request_body(spec: FeatureSpec, page: pd.DataFrame) -> dict[str, Any]:
    first = page.iloc[0]
    context = {
        f.name: _json_value(f.kind, first[f.name]) for f in spec.of_source("context")
    }
    candidates = [
        {
            "id": str(row["video_id"]),
            "features": {
                f.name: _json_value(f.kind, row[f.name])
                for f in spec.of_source("candidate")
                if not f.value_from_id
            },
        }
        for _, row in page.iterrows()
    ]
    return {
        "request_id": str(first["request_id"]),
        "context": context,
        "candidates": candidates,
    }


def _json_value(kind: str, value: Any) -> Any:
    if kind == "numeric":
        return float(value)
    if kind == "id_list":
        return split_id_list(value)
    return value.item() if isinstance(value, np.generic) else value


def golden_outputs(
    model: onnx.ModelProto, network: Network, requests: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Run each golden request through the graph and check it against numpy.

    `network` holds the parameters exactly as the manifest stores them.
    """
    golden = []
    for request in requests:
        tensors = request_tensors(network.spec, request)
        outputs = run_graph(model, tensors)
        check_parity(outputs, reference_outputs(network, tensors))
        golden.append(
            {
                "request": request,
                "outputs": {k: v.astype(float).tolist() for k, v in outputs.items()},
            }
        )
    return golden


def parity_error(graph_values: np.ndarray, numpy_values: np.ndarray) -> float:
    """Return the largest relative difference between two positive outputs."""
    return float(np.max(np.abs(graph_values / numpy_values - 1.0), initial=0.0))


def check_parity(
    graph_outputs: dict[str, np.ndarray], numpy_outputs: dict[str, np.ndarray]
) -> None:
    """Raise ExportError when an output of the graph differs from numpy.

    Every output is compared relatively, the logit through its exponential,
    because a relative error of a logit near zero says nothing.
    """
    for name, expected in numpy_outputs.items():
        actual = graph_outputs[name].astype(np.float64)
        if name == LOGIT_OUTPUT:
            actual, expected = np.exp(actual), np.exp(expected)
        error = parity_error(actual, expected)
        # Written so that a NaN error, which compares false, fails too.
        if not error <= PARITY_TOLERANCE:
            raise ExportError(
                f"graph and numpy {name} differ by {error:.2e} relative, "
                f"more than {PARITY_TOLERANCE:.0e}"
            )


def check_logit_range(network: Network) -> tuple[float, float]:
    """Return the logit's bounds, or raise ExportError when scores could tie.

    Above the graph's cap the served scores all equal `exp(LOGIT_CAP)`, and
    below `LOGIT_FLOOR` float32 `exp` loses precision on its way to 0, so a
    model that reaches either would rank some candidates in request order.
    """
    low, high = logit_range(network)
    if not (low > LOGIT_FLOOR and high < LOGIT_CAP):
        raise ExportError(
            f"the {network.variant} model's logit can range over [{low:.1f}, "
            f"{high:.1f}], beyond ({LOGIT_FLOOR:.0f}, {LOGIT_CAP:.0f}) where "
            "float32 exp keeps scores apart; train with a smaller --l2, which "
            "penalises large weights more"
        )
    return low, high


def write_model(
    directory: Path,
    model: onnx.ModelProto,
    manifest: dict[str, Any],
    parameters: bytes | None = None,
) -> None:
    """Write the graph, the manifest and, if given, the parameter file.

    The files go to a staging directory beside `directory`, which is renamed
    once complete, so a service polling the repository never finds a partly
    written version. Raises FileExistsError rather than overwrite an existing
    version, and removes the staging directory when writing fails.
    """
    check_version_is_free(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f"{STAGING_PREFIX}{directory.name}-{os.getpid()}"
    staging.mkdir()
    try:
        _write_files(staging, model, manifest, parameters)
        _publish(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote %s", directory)


def _write_files(
    directory: Path,
    model: onnx.ModelProto,
    manifest: dict[str, Any],
    parameters: bytes | None,
) -> None:
    onnx.save_model(model, directory / "model.onnx")
    if parameters is not None:
        (directory / PARAMETERS_FILE).write_bytes(parameters)
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    (directory / "manifest.json").write_text(text, encoding="utf-8")


def _publish(staging: Path, directory: Path) -> None:
    # rename() silently replaces an empty directory at the target, so the
    # target is checked again in case another run created it meanwhile.
    check_version_is_free(directory)
    try:
        staging.rename(directory)
    except OSError as error:
        if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        raise FileExistsError(
            f"{directory} already exists; choose another --version or remove it"
        ) from None


def manifest_header(
    name: str, version: int, created_at: str, variant: str
) -> dict[str, Any]:
    """Return the identifying fields every manifest starts with."""
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "version": version,
        "created_at": created_at,
        "variant": variant,
        "hash_algorithm": HASH_ALGORITHM,
    }


def graph_signature(
    model: onnx.ModelProto, descriptions: dict[str, str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Describe the graph's inputs and outputs for the manifest.

    An output named in `descriptions` also gets its `description`.
    """
    descriptions = descriptions or {}

    def describe(value: onnx.ValueInfoProto) -> dict[str, Any]:
        tensor = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        return {"name": value.name, "dtype": dtype, "shape": shape}

    outputs = [describe(v) for v in model.graph.output]
    for output in outputs:
        if output["name"] in descriptions:
            output["description"] = descriptions[output["name"]]
    return {"inputs": [describe(v) for v in model.graph.input], "outputs": outputs}
