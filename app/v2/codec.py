"""Wire format of inference requests and responses, binary tensor data included.

A body is one JSON object, optionally followed by the raw bytes of some
tensors (Triton's binary tensor data extension). The value of the
`Inference-Header-Content-Length` header gives the length of the JSON object
in bytes, and the tensors' `binary_data_size` parameters divide the rest, in
the order in which the JSON object lists them. Tensor bytes are little-endian
and row-major, without padding.

This module checks the form of a request: types of the JSON fields, names,
parameters and byte counts. Whether the tensors fit the model is checked in
`app.v2.tensors`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import describe_value
from app.v2.errors import InvalidInferenceRequest
from app.v2.signature import DATATYPES

HEADER_LENGTH_HEADER = "Inference-Header-Content-Length"
BINARY_DATA_EXTENSION = "binary_tensor_data"

_DECIMAL = re.compile(r"[0-9]{1,15}")
_UNSUPPORTED_PARAMETERS = {
    "shared_memory_region": "shared memory",
    "classification": "the classification extension",
}


@dataclass(frozen=True)
class RequestInput:
    """One input tensor of a request, its data not yet converted."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any
    """The JSON `data` value, or None when the tensor is sent as binary data."""

    binary: memoryview | None
    """The tensor's bytes when it is sent as binary data."""


@dataclass(frozen=True)
class RequestedOutput:
    """An output named in the request, and whether it is returned as bytes."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferenceRequest:
    """A decoded inference request."""

    id: str | None
    inputs: tuple[RequestInput, ...]
    outputs: tuple[RequestedOutput, ...] | None
    """The requested outputs, or None to return every output."""

    binary_output: bool
    """Whether outputs that do not set `binary_data` are returned as bytes."""


@dataclass(frozen=True)
class EncodedResponse:
    """A response body, with the JSON length when binary data follows the JSON."""

    body: bytes
    header_length: int | None


def decode_request(body: bytes, header_length: str | None) -> InferenceRequest:
    """Decode a request body, given the Inference-Header-Content-Length value.

    Raises InvalidInferenceRequest naming the first field that is malformed.
    """
    json_part, binary_part = _split_body(body, header_length)
    document = _parse_json(json_part, header_length is None)

    request_id = _request_id(document)
    parameters = _parameters(document.get("parameters"), "the request")
    binary_output = _flag(parameters, "binary_data_output", "the request")
    inputs = _read_inputs(document, binary_part)
    outputs = _requested_outputs(document, binary_output)
    return InferenceRequest(request_id, inputs, outputs, binary_output)


def encode_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: list[tuple[str, np.ndarray, bool]],
) -> EncodedResponse:
    """Encode output tensors given as (name, array, binary) in response order."""
    entries = []
    blobs = []
    for name, array, binary in outputs:
        entry: dict[str, Any] = {
            "name": name,
            "datatype": DATATYPES[array.dtype.name],
            "shape": list(array.shape),
        }
        if binary:
            blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)

    document: dict[str, Any] = {
        "model_name": model_name,
        "model_version": model_version,
    }
    if request_id is not None:
        document["id"] = request_id
    document["outputs"] = entries

    header = json.dumps(document, separators=(",", ":")).encode("utf-8")
    if not blobs:
        return EncodedResponse(header, None)
    return EncodedResponse(b"".join([header, *blobs]), len(header))


def _split_body(
    body: bytes, header_length: str | None
) -> tuple[bytes, memoryview | None]:
    if header_length is None:
        return body, None

    if not _DECIMAL.fullmatch(header_length.strip()):
        raise InvalidInferenceRequest(
            f"the {HEADER_LENGTH_HEADER} header is {header_length!r}: set it to "
            "the length in bytes of the JSON object at the start of the body"
        )
    length = int(header_length)
    if length > len(body):
        raise InvalidInferenceRequest(
            f"the {HEADER_LENGTH_HEADER} header is {length}, but the body has only "
            f"{len(body)} bytes: set it to the length in bytes of the JSON object "
            "at the start of the body"
        )
    return body[:length], memoryview(body)[length:]


def _parse_json(text: bytes, whole_body: bool) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except UnicodeDecodeError as error:
        raise InvalidInferenceRequest(
            f"the request's JSON object is not valid UTF-8 at byte {error.start}"
            + _binary_hint(whole_body)
        ) from None
    except json.JSONDecodeError as error:
        raise InvalidInferenceRequest(
            f"the request's JSON object is invalid: {error.msg} at character "
            f"{error.pos}" + _binary_hint(whole_body and error.msg == "Extra data")
        ) from None
    except RecursionError:
        raise InvalidInferenceRequest(
            "the request's JSON object is nested too deeply: send tensor data "
            "flat, in row-major order"
        ) from None
    except ValueError as error:
        # json raises a plain ValueError for an integer of more than 4300
        # digits, which no tensor datatype can hold anyway.
        raise InvalidInferenceRequest(
            f"the request's JSON object contains a number that cannot be read: "
            f"{error}; send numbers that fit the tensor's datatype"
        ) from None

    if not isinstance(document, dict):
        raise InvalidInferenceRequest(
            f"the request body is {describe_value(document)}, but it must be a JSON "
            'object such as {"inputs": [{"name", "shape", "datatype", "data"}]}'
        )
    return document


def _binary_hint(relevant: bool) -> str:
    # Binary data sent without the header makes the JSON parser fail at the
    # first byte after the JSON object.
    if not relevant:
        return ""
    return (
        f"; if binary tensor data follows the JSON object, send the "
        f"{HEADER_LENGTH_HEADER} header with the JSON object's length in bytes"
    )


def _request_id(document: dict[str, Any]) -> str | None:
    request_id = document.get("id")
    if request_id is None or isinstance(request_id, str):
        return request_id
    raise InvalidInferenceRequest(
        f'the request\'s "id" is {describe_value(request_id)}: send a string '
        "or leave it out"
    )


def _parameters(value: Any, owner: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInferenceRequest(
            f'"parameters" of {owner} is {describe_value(value)}: send a JSON '
            "object of name/value pairs or leave it out"
        )

    for name, feature in _UNSUPPORTED_PARAMETERS.items():
        if name in value:
            raise InvalidInferenceRequest(
                f'{owner} sets the parameter "{name}", but this server does not '
                f"support {feature}: send tensor data in the request body"
            )
    return value


def _flag(parameters: dict[str, Any], name: str, owner: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInferenceRequest(
            f'the parameter "{name}" of {owner} is {describe_value(value)}: '
            "send true or false"
        )
    return value


def _read_inputs(
    document: dict[str, Any], binary_part: memoryview | None
) -> tuple[RequestInput, ...]:
    entries = document.get("inputs")
    if not isinstance(entries, list):
        raise InvalidInferenceRequest(
            f'the request\'s "inputs" is {describe_value(entries)}: send a list '
            'with one {"name", "shape", "datatype", "data"} object per model input'
        )

    inputs = []
    offset = 0
    for index, entry in enumerate(entries):
        tensor = _read_input(index, entry, binary_part, offset)
        if tensor.binary is not None:
            offset += len(tensor.binary)
        inputs.append(tensor)

    _check_unique([tensor.name for tensor in inputs], "input")
    _check_binary_consumed(binary_part, offset)
    return tuple(inputs)


def _read_input(
    index: int, entry: Any, binary_part: memoryview | None, offset: int
) -> RequestInput:
    owner = f"inputs[{index}]"
    if not isinstance(entry, dict):
        raise InvalidInferenceRequest(
            f"{owner} is {describe_value(entry)}: send an object with "
            '"name", "shape", "datatype" and "data"'
        )

    name = _string_field(entry, "name", owner)
    owner = f'input "{name}"'
    datatype = _string_field(entry, "datatype", owner)
    shape = _shape(entry.get("shape"), owner)
    parameters = _parameters(entry.get("parameters"), owner)
    size = parameters.get("binary_data_size")
    if size is None:
        return RequestInput(name, datatype, shape, _json_data(entry, owner), None)

    binary = _binary_data(entry, owner, size, binary_part, offset)
    return RequestInput(name, datatype, shape, None, binary)


def _string_field(entry: dict[str, Any], key: str, owner: str) -> str:
    value = entry.get(key)
    if isinstance(value, str) and value:
        return value
    raise InvalidInferenceRequest(
        f'"{key}" of {owner} is {describe_value(value)}: send a non-empty string'
    )


def _shape(value: Any, owner: str) -> tuple[int, ...]:
    if isinstance(value, list) and all(_is_size(dim) for dim in value):
        return tuple(value)
    raise InvalidInferenceRequest(
        f'"shape" of {owner} is {describe_value(value)}: send a list of '
        "non-negative integers, such as [8] for 8 candidates"
    )


def _is_size(value: Any) -> bool:
    return type(value) is int and value >= 0


def _json_data(entry: dict[str, Any], owner: str) -> Any:
    if "data" not in entry:
        raise InvalidInferenceRequest(
            f'{owner} has no "data": send its values as a JSON array, or as '
            'binary data with the parameter "binary_data_size"'
        )
    return entry["data"]


def _binary_data(
    entry: dict[str, Any],
    owner: str,
    size: Any,
    binary_part: memoryview | None,
    offset: int,
) -> memoryview:
    if not _is_size(size):
        raise InvalidInferenceRequest(
            f'the parameter "binary_data_size" of {owner} is {describe_value(size)}'
            ": send the number of bytes of the tensor's binary data"
        )
    if "data" in entry:
        raise InvalidInferenceRequest(
            f'{owner} has both "data" and the parameter "binary_data_size": '
            "send its values in only one of the two"
        )
    if binary_part is None:
        raise InvalidInferenceRequest(
            f'{owner} sets the parameter "binary_data_size", but the request has '
            f"no {HEADER_LENGTH_HEADER} header: send it with the length in bytes "
            "of the JSON object at the start of the body"
        )

    remaining = len(binary_part) - offset
    if size > remaining:
        raise InvalidInferenceRequest(
            f'{owner} has "binary_data_size" {size}, but only {remaining} bytes of '
            "binary data follow the inputs before it: send each input's bytes in "
            "the order of the inputs"
        )
    return binary_part[offset : offset + size]


def _check_binary_consumed(binary_part: memoryview | None, used: int) -> None:
    if binary_part is None or len(binary_part) == used:
        return
    raise InvalidInferenceRequest(
        f"the body has {len(binary_part)} bytes after the JSON object, but the "
        f'inputs\' "binary_data_size" parameters add up to {used}: send exactly '
        "the bytes of the binary inputs after the JSON object"
    )


def _requested_outputs(
    document: dict[str, Any], binary_output: bool
) -> tuple[RequestedOutput, ...] | None:
    entries = document.get("outputs")
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise InvalidInferenceRequest(
            f'the request\'s "outputs" is {describe_value(entries)}: send a list '
            'of {"name"} objects, or leave it out to receive every output'
        )

    outputs = []
    for index, entry in enumerate(entries):
        owner = f"outputs[{index}]"
        if not isinstance(entry, dict):
            raise InvalidInferenceRequest(
                f'{owner} is {describe_value(entry)}: send an object with "name"'
            )
        name = _string_field(entry, "name", owner)
        parameters = _parameters(entry.get("parameters"), f'output "{name}"')
        binary = binary_output
        if "binary_data" in parameters:
            binary = _flag(parameters, "binary_data", f'output "{name}"')
        outputs.append(RequestedOutput(name, binary))

    _check_unique([output.name for output in outputs], "output")
    return tuple(outputs)


def _check_unique(names: list[str], role: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInferenceRequest(
                f'the request lists the {role} "{name}" twice: send each {role} once'
            )
        seen.add(name)
