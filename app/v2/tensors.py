"""Conversion of request tensors into the model's raw inputs, with their checks.

The checks run from cheap to costly: names, datatypes and ranks first, then
the declared shapes against each other and against the size limits, and only
then the data, so an oversized request is rejected before its data is
converted. Values are checked with numpy over whole tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from app.errors import describe_value
from app.v2.codec import RequestInput
from app.v2.errors import InvalidInferenceRequest
from app.v2.signature import (
    CANDIDATE_REQUEST_ROLE,
    INPUT_DTYPES,
    ModelSignature,
    TensorSpec,
)

Tensors = dict[str, np.ndarray]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT64_MAX = float(np.finfo(np.float64).max)
_INT64_MIN = int(np.iinfo(np.int64).min)
_INT64_MAX = int(np.iinfo(np.int64).max)
_CATEGORICAL_RULE = (
    "categorical ids are non-negative: send the id that docs/model-format.md "
    "defines for each value"
)
_ID_LIST_RULE = (
    "list ids are non-negative and -1 only pads a row: send the ids that "
    "docs/model-format.md defines, padded with -1"
)
_ROW_INDEX_RULE = (
    "row indices are non-negative: send for each candidate the index of its "
    "request's row"
)
_JSON_TYPES = {"FP32": (int, float), "INT64": (int,)}
_CONTENT = {
    "numeric": "numeric feature values as FP32",
    "categorical": "categorical ids as INT64",
    "id_list": "id lists as INT64 ids padded with -1",
    CANDIDATE_REQUEST_ROLE: "request row indices as INT64",
}


def build_tensors(
    signature: ModelSignature, inputs: tuple[RequestInput, ...], max_rows: int
) -> Tensors:
    """Check the request's inputs against the model and convert their data.

    `max_rows` bounds the number of candidates and of requests in a batch.
    Raises InvalidInferenceRequest naming the tensor and the value at fault.
    """
    received = {tensor.name: tensor for tensor in inputs}
    _check_names(signature, received)
    for spec in signature.inputs:
        _check_declaration(signature, spec, received[spec.name])

    sizes = _check_dimensions(signature, received)
    _check_limits(signature, received, max_rows)

    tensors = {}
    for spec in signature.inputs:
        array = _to_array(spec, received[spec.name])
        _check_values(signature, spec, array, sizes)
        native = INPUT_DTYPES[spec.datatype].newbyteorder("=")
        tensors[spec.name] = array.astype(native, copy=False)
    return tensors


def _check_names(signature: ModelSignature, received: dict[str, RequestInput]) -> None:
    expected = [spec.name for spec in signature.inputs]
    unknown = [name for name in received if name not in expected]
    if unknown:
        raise InvalidInferenceRequest(
            f'the model has no input "{unknown[0]}": send only its inputs '
            f"{_quote(expected)}"
        )

    missing = [name for name in expected if name not in received]
    if missing:
        raise InvalidInferenceRequest(
            f"the request lacks the inputs {_quote(missing)}: send every input "
            "that the model metadata lists"
        )


def _check_declaration(
    signature: ModelSignature, spec: TensorSpec, tensor: RequestInput
) -> None:
    if tensor.datatype != spec.datatype:
        raise InvalidInferenceRequest(
            f'input "{spec.name}" has datatype "{tensor.datatype}", but the model '
            f"needs {spec.datatype}: send {_CONTENT[spec.role]}"
        )

    if len(tensor.shape) != len(spec.dims):
        dims = ", ".join(_describe_dim(signature, dim) for dim in spec.dims)
        raise InvalidInferenceRequest(
            f'input "{spec.name}" has shape {list(tensor.shape)} of rank '
            f"{len(tensor.shape)}, but the model needs rank {len(spec.dims)}: "
            f"send a shape with the sizes {dims}"
        )


def _check_dimensions(
    signature: ModelSignature, received: dict[str, RequestInput]
) -> dict[str, int]:
    """Return the size of each symbolic dimension, once all inputs agree on it."""
    seen: dict[str, tuple[int, str]] = {}
    for spec in signature.inputs:
        shape = received[spec.name].shape
        for axis, (dim, size) in enumerate(zip(spec.dims, shape, strict=True)):
            if isinstance(dim, int):
                _check_fixed_size(spec.name, axis, size, dim)
                continue

            first_size, first_name = seen.setdefault(dim, (size, spec.name))
            if size != first_size:
                raise InvalidInferenceRequest(
                    f'input "{spec.name}" has size {size} in dimension {axis}, but '
                    f'input "{first_name}" has size {first_size}, and both sizes '
                    f"are {_describe_dim(signature, dim)}: send tensors that agree "
                    f"on {dim}"
                )
    return {dim: size for dim, (size, _) in seen.items()}


def _check_fixed_size(name: str, axis: int, size: int, expected: int) -> None:
    if size != expected:
        raise InvalidInferenceRequest(
            f'input "{name}" has size {size} in dimension {axis}, but the model '
            f"needs {expected}: send {expected}"
        )


def _check_limits(
    signature: ModelSignature, received: dict[str, RequestInput], max_rows: int
) -> None:
    for spec in signature.inputs:
        shape = received[spec.name].shape
        if shape and shape[0] > max_rows:
            raise InvalidInferenceRequest(
                f'input "{spec.name}" has {shape[0]} rows, more than the maximum of '
                f"{max_rows} per request (WATCHTIME_MAX_CANDIDATES): split the "
                "batch into several requests"
            )
        if spec.max_length is not None and len(shape) > 1:
            _check_row_length(spec.name, shape[1], spec.max_length)


def _check_row_length(name: str, length: int, max_length: int) -> None:
    # The graph would accept longer rows, but the feature spec caps every id
    # list at max_length ids, and the model was trained on lists so capped.
    if length > max_length:
        raise InvalidInferenceRequest(
            f'input "{name}" has rows of {length} ids, more than its max_length '
            f"of {max_length}: keep the first {max_length} ids of each list, "
            "the most recent ones"
        )


def _to_array(spec: TensorSpec, tensor: RequestInput) -> np.ndarray:
    if tensor.binary is not None:
        return _array_from_bytes(spec, tensor)
    return _array_from_json(spec, tensor)


def _array_from_bytes(spec: TensorSpec, tensor: RequestInput) -> np.ndarray:
    dtype = INPUT_DTYPES[spec.datatype]
    expected = math.prod(tensor.shape) * dtype.itemsize
    if len(tensor.binary) != expected:
        raise InvalidInferenceRequest(
            f'input "{spec.name}" has "binary_data_size" {len(tensor.binary)}, but '
            f"{spec.datatype} data of shape {list(tensor.shape)} takes {expected} "
            "bytes: send 8 bytes per INT64 and 4 per FP32 element, little-endian "
            "and row-major"
        )

    return np.frombuffer(tensor.binary, dtype=dtype).reshape(tensor.shape)


def _array_from_json(spec: TensorSpec, tensor: RequestInput) -> np.ndarray:
    data = tensor.data
    if not isinstance(data, list):
        raise InvalidInferenceRequest(
            f'"data" of input "{spec.name}" is {describe_value(data)}: send a JSON '
            "array, flat in row-major order or nested to the tensor's shape"
        )
    _check_json_elements(spec, data)

    # FP32 data is read as float64 first, so values beyond the float32 range
    # are reported instead of becoming infinities.
    try:
        array = np.array(data, dtype=np.int64 if spec.datatype == "INT64" else float)
    except ValueError:
        raise InvalidInferenceRequest(
            f'"data" of input "{spec.name}" has nested rows of different lengths: '
            "send it flat in row-major order, or nested with equal rows"
        ) from None
    except OverflowError:
        position, value = _first_overflow(data, spec.datatype)
        raise InvalidInferenceRequest(
            f'"data" of input "{spec.name}" has {describe_value(value)} at '
            f"[{_join(position)}], outside the range of {spec.datatype}: send "
            f"{_CONTENT[spec.role]}"
        ) from None
    return _reshape(spec, tensor, array)


def _check_json_elements(spec: TensorSpec, data: list[Any]) -> None:
    allowed = _JSON_TYPES[spec.datatype]
    found = _first_bad_element(data, allowed, len(spec.dims), ())
    if found is None:
        return

    position, value = found
    if isinstance(value, list):
        problem = f"is nested deeper than the tensor's rank {len(spec.dims)}"
    else:
        problem = f"has {describe_value(value)} at [{_join(position)}]"
    kind = "integers" if spec.datatype == "INT64" else "numbers"
    raise InvalidInferenceRequest(
        f'"data" of input "{spec.name}" {problem}: {spec.datatype} data must be '
        f"JSON {kind}, so send {_CONTENT[spec.role]}"
    )


def _first_bad_element(
    values: list[Any], allowed: tuple[type, ...], depth: int, position: tuple[int, ...]
) -> tuple[tuple[int, ...], Any] | None:
    """Return the position and value of the first element of a wrong type.

    Lists may nest `depth` levels deep. The types of one level are collected
    with one call to `map`, so valid data costs no Python loop per element.
    Booleans are rejected, because their type is `bool`, not `int`.
    """
    types = set(map(type, values))
    if types <= set(allowed):
        return None

    for index, value in enumerate(values):
        if isinstance(value, list) and depth > 1:
            found = _first_bad_element(value, allowed, depth - 1, (*position, index))
            if found is not None:
                return found
        elif type(value) not in allowed:
            return (*position, index), value
    return None


def _first_overflow(data: list[Any], datatype: str) -> tuple[tuple[int, ...], int]:
    """Return the position and value of the first integer that numpy rejected."""
    for position, value in _leaves(data, ()):
        if datatype == "INT64" and not _INT64_MIN <= value <= _INT64_MAX:
            return position, value
        if datatype != "INT64" and abs(value) > _FLOAT64_MAX:
            return position, value
    raise ValueError("numpy reported an overflow that no element has")


def _leaves(
    values: list[Any], position: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], Any]]:
    for index, value in enumerate(values):
        if isinstance(value, list):
            yield from _leaves(value, (*position, index))
        else:
            yield (*position, index), value


def _reshape(spec: TensorSpec, tensor: RequestInput, array: np.ndarray) -> np.ndarray:
    if array.shape == tensor.shape:
        return array
    if array.ndim == 1 and array.size == math.prod(tensor.shape):
        return array.reshape(tensor.shape)

    if array.ndim == 1:
        found = f"{array.size} values"
    else:
        found = f"data nested as {list(array.shape)}"
    raise InvalidInferenceRequest(
        f'input "{spec.name}" has {found}, but its shape {list(tensor.shape)} '
        f"holds {math.prod(tensor.shape)}: send shape and data that agree, the "
        "data flat in row-major order or nested to the shape"
    )


def _check_values(
    signature: ModelSignature,
    spec: TensorSpec,
    array: np.ndarray,
    sizes: dict[str, int],
) -> None:
    if spec.role == "numeric":
        _check_finite(spec, array)
    elif spec.role == "categorical":
        _check_at_least(spec, array, 0, _CATEGORICAL_RULE)
    elif spec.role == "id_list":
        _check_at_least(spec, array, -1, _ID_LIST_RULE)
    elif spec.role == CANDIDATE_REQUEST_ROLE:
        _check_candidate_request(signature, spec, array, sizes)


def _check_finite(spec: TensorSpec, array: np.ndarray) -> None:
    bad = ~np.isfinite(array) | (np.abs(array) > _FLOAT32_MAX)
    if bad.any():
        raise InvalidInferenceRequest(
            f'input "{spec.name}" has {_first_value(array, bad)}: send finite '
            "numbers within the float32 range"
        )


def _check_at_least(
    spec: TensorSpec, array: np.ndarray, minimum: int, rule: str
) -> None:
    bad = array < minimum
    if bad.any():
        raise InvalidInferenceRequest(
            f'input "{spec.name}" has {_first_value(array, bad)}, but {rule}'
        )


def _check_candidate_request(
    signature: ModelSignature,
    spec: TensorSpec,
    array: np.ndarray,
    sizes: dict[str, int],
) -> None:
    dim = signature.request_dimension
    if dim is None:
        _check_at_least(spec, array, 0, _ROW_INDEX_RULE)
        return

    requests = sizes[dim]
    bad = (array < 0) | (array >= requests)
    if bad.any():
        raise InvalidInferenceRequest(
            f'input "{spec.name}" has {_first_value(array, bad)}, but the context '
            f"tensors have {dim} = {requests} rows: send for each candidate the "
            f"index of its request's row in the context tensors, from 0 to {dim}-1"
        )


def _first_value(array: np.ndarray, bad: np.ndarray) -> str:
    flat_index = int(np.flatnonzero(bad)[0])
    index = np.unravel_index(flat_index, array.shape)
    value = array.flat[flat_index].item()
    return f"{describe_value(value)} at [{_join(index)}]"


def _describe_dim(signature: ModelSignature, dim: str | int) -> str:
    if isinstance(dim, int):
        return str(dim)
    return signature.describe_dimension(dim)


def _join(index: tuple[Any, ...]) -> str:
    return ", ".join(str(int(i)) for i in index)


def _quote(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)
