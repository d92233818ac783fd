"""Rejected Open Inference Protocol requests, sent as raw HTTP with httpx.

Every case starts from a valid request built from a golden request of the
trainer's model and breaks one thing. The protocol's error body is
`{"error": "<message>"}`, and each message names the tensor and the value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from tritonclient.utils import np_to_triton_dtype

from app.contract import FeatureSpec
from app.settings import Settings
from trainer.tensors import request_tensors

pytest_plugins = ["service_fixtures"]

INFER_PATH = "/v2/models/watchtime/infer"
HEADER_LENGTH = "Inference-Header-Content-Length"
CANDIDATES = 8
"""Number of candidates of the first golden request."""

MAX_ROWS = Settings.model_fields["max_candidates"].default
CONTEXT_INPUTS = ("country", "device", "hour_of_day", "recent_video_ids")
CANDIDATE_INPUTS = (
    "video_id",
    "channel_id",
    "category",
    "video_duration_s",
    "video_age_days",
    "previous_impressions",
    "hours_since_channel_watch",
    "candidate_request",
)
Body = dict[str, Any]


@pytest.fixture
def body(manifest: dict[str, Any]) -> Body:
    """Return a valid JSON inference request of the first golden request."""
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    tensors = request_tensors(spec, manifest["golden"][0]["request"])
    return {
        "inputs": [
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": np_to_triton_dtype(array.dtype),
                "data": array.ravel().tolist(),
            }
            for name, array in tensors.items()
        ]
    }


def find(body: Body, name: str) -> Body:
    return next(tensor for tensor in body["inputs"] if tensor["name"] == name)


def set_value(name: str, index: int, value: Any) -> Callable[[Body], None]:
    def change(body: Body) -> None:
        find(body, name)["data"][index] = value

    return change


def set_field(name: str, key: str, value: Any) -> Callable[[Body], None]:
    def change(body: Body) -> None:
        find(body, name)[key] = value

    return change


def remove_input(body: Body) -> None:
    body["inputs"] = [t for t in body["inputs"] if t["name"] != "country"]


def add_unknown_input(body: Body) -> None:
    body["inputs"].append(
        {"name": "colour", "shape": [1], "datatype": "INT64", "data": [3]}
    )


def repeat_input(body: Body) -> None:
    body["inputs"].append(dict(find(body, "country")))


def drop_last_value(body: Body) -> None:
    find(body, "video_id")["data"].pop()


def shorten_candidate_tensor(body: Body) -> None:
    tensor = find(body, "channel_id")
    tensor["data"].pop()
    tensor["shape"] = [CANDIDATES - 1]


def nest_too_deep(body: Body) -> None:
    tensor = find(body, "video_id")
    tensor["data"] = [tensor["data"]]


def make_two_requests_with_uneven_rows(body: Body) -> None:
    for name in CONTEXT_INPUTS:
        tensor = find(body, name)
        tensor["shape"][0] = 2
        tensor["data"] = tensor["data"] * 2
    ids = find(body, "recent_video_ids")
    width = ids["shape"][1]
    ids["data"] = [ids["data"][:width], ids["data"][: width - 1]]


def exceed_row_limit(body: Body) -> None:
    for name in CANDIDATE_INPUTS:
        find(body, name)["shape"] = [MAX_ROWS + 1]


def lengthen_id_list(body: Body) -> None:
    tensor = find(body, "recent_video_ids")
    tensor["shape"] = [1, 51]
    tensor["data"] = list(range(51))


def request_unknown_output(body: Body) -> None:
    body["outputs"] = [{"name": "click_probability"}]


def set_request_key(key: str, value: Any) -> Callable[[Body], None]:
    def change(body: Body) -> None:
        body[key] = value

    return change


INVALID_REQUESTS = [
    ("missing input", remove_input, ['lacks the inputs "country"']),
    ("unknown input", add_unknown_input, ['the model has no input "colour"']),
    ("repeated input", repeat_input, ['lists the input "country" twice']),
    (
        "FP32 ids",
        set_field("video_id", "datatype", "FP32"),
        ['input "video_id" has datatype "FP32"', "needs INT64"],
    ),
    (
        "INT64 numbers",
        set_field("video_age_days", "datatype", "INT64"),
        ['input "video_age_days" has datatype "INT64"', "needs FP32"],
    ),
    (
        "wrong rank",
        set_field("video_id", "shape", [1, CANDIDATES]),
        ['input "video_id" has shape [1, 8] of rank 2', "needs rank 1"],
    ),
    (
        "negative dimension",
        set_field("video_id", "shape", [-1]),
        ['"shape" of input "video_id" is the array [-1]'],
    ),
    (
        "short data",
        drop_last_value,
        ['input "video_id" has 7 values', "its shape [8] holds 8"],
    ),
    (
        "candidate rows disagree",
        shorten_candidate_tensor,
        ['input "channel_id" has size 7', 'input "video_id" has size 8'],
    ),
    (
        "uneven nested rows",
        make_two_requests_with_uneven_rows,
        ['"data" of input "recent_video_ids" has nested rows of different'],
    ),
    (
        "data nested deeper than rank",
        nest_too_deep,
        ['"data" of input "video_id" is nested deeper than', "rank 1"],
    ),
    (
        "data not an array",
        set_field("video_id", "data", "v1,v2"),
        ['"data" of input "video_id" is the string "v1,v2"'],
    ),
    (
        "missing data",
        set_field("video_id", "data", None),
        ['"data" of input "video_id" is null'],
    ),
    (
        "string id",
        set_value("video_id", 3, "v3"),
        ['"data" of input "video_id" has the string "v3" at [3]'],
    ),
    (
        "boolean id",
        set_value("category", 0, True),
        ['"data" of input "category" has the boolean true at [0]'],
    ),
    (
        "fractional id",
        set_value("device", 0, 1.5),
        ['"data" of input "device" has the number 1.5 at [0]'],
    ),
    (
        "id beyond int64",
        set_value("video_id", 0, 2**63),
        [f'"data" of input "video_id" has the number {2**63} at [0]', "INT64"],
    ),
    (
        "negative categorical id",
        set_value("video_id", 2, -5),
        ['input "video_id" has the number -5 at [2]', "non-negative"],
    ),
    (
        "id list below padding",
        set_value("recent_video_ids", 0, -2),
        ['input "recent_video_ids" has the number -2 at [0, 0]', "padded with -1"],
    ),
    (
        "candidate request past R",
        set_value("candidate_request", 4, 1),
        ['input "candidate_request" has the number 1 at [4]', "have R = 1 rows"],
    ),
    (
        "negative candidate request",
        set_value("candidate_request", 0, -1),
        ['input "candidate_request" has the number -1 at [0]', "from 0 to R-1"],
    ),
    (
        "infinite number",
        set_value("video_duration_s", 1, float("inf")),
        ['input "video_duration_s" has the number Infinity at [1]', "finite"],
    ),
    (
        "not a number",
        set_value("video_age_days", 0, float("nan")),
        ['input "video_age_days" has the number NaN at [0]', "finite"],
    ),
    (
        "beyond float32",
        set_value("previous_impressions", 2, 1e39),
        ['input "previous_impressions" has the number 1e+39 at [2]', "float32"],
    ),
    (
        "too many candidates",
        exceed_row_limit,
        [
            f'input "video_id" has {MAX_ROWS + 1} rows',
            f"the maximum of {MAX_ROWS} per request",
        ],
    ),
    (
        "id list longer than max_length",
        lengthen_id_list,
        ['input "recent_video_ids" has rows of 51 ids', "max_length of 50"],
    ),
    (
        "unknown output",
        request_unknown_output,
        ['the model has no output "click_probability"'],
    ),
    (
        "numeric request id",
        set_request_key("id", 7),
        ['the request\'s "id" is the number 7'],
    ),
    (
        "inputs not a list",
        set_request_key("inputs", {"video_id": [1]}),
        ['the request\'s "inputs" is the object'],
    ),
    (
        "non-boolean binary flag",
        set_request_key("parameters", {"binary_data_output": "yes"}),
        ['"binary_data_output" of the request is the string "yes"'],
    ),
    (
        "shared memory",
        set_field("video_id", "parameters", {"shared_memory_region": "r0"}),
        ['input "video_id" sets the parameter "shared_memory_region"'],
    ),
]


def post_json(client: httpx.Client, body: Body) -> httpx.Response:
    # json.dumps writes NaN and Infinity, as Python clients do.
    return client.post(INFER_PATH, content=json.dumps(body))


def error_message(response: httpx.Response) -> str:
    return response.json()["error"]


def test_valid_body_is_accepted(client, body):
    response = post_json(client, body)

    assert response.status_code == 200
    assert response.json()["model_version"] == "1"


@pytest.mark.parametrize(
    ("change", "fragments"),
    [(change, fragments) for _, change, fragments in INVALID_REQUESTS],
    ids=[case for case, _, _ in INVALID_REQUESTS],
)
def test_invalid_request_is_400_naming_value(client, body, change, fragments):
    change(body)

    response = post_json(client, body)

    assert response.status_code == 400
    for fragment in fragments:
        assert fragment in error_message(response)


def test_error_body_is_one_message_string(client, body):
    set_value("video_id", 0, -1)(body)

    response = post_json(client, body)

    assert list(response.json()) == ["error"]
    assert isinstance(response.json()["error"], str)


def test_invalid_json_is_400(client):
    response = client.post(INFER_PATH, content=b'{"inputs": [')

    assert response.status_code == 400
    assert "the request's JSON object is invalid" in error_message(response)


def test_integer_of_5000_digits_is_400(client):
    body = (
        b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": ['
        + (b"9" * 5000)
        + b"]}]}"
    )

    response = client.post(INFER_PATH, content=body)

    assert response.status_code == 400
    assert "cannot be read" in error_message(response)


def test_json_array_body_is_400(client):
    response = client.post(INFER_PATH, content=b"[]")

    assert response.status_code == 400
    assert "must be a JSON object" in error_message(response)


def test_binary_data_without_header_is_400(client, body):
    content = json.dumps(body).encode() + b"\x00" * 8

    response = client.post(INFER_PATH, content=content)

    assert response.status_code == 400
    assert f"send the {HEADER_LENGTH} header" in error_message(response)


def test_header_length_beyond_body_is_400(client, body):
    content = json.dumps(body).encode()

    response = client.post(
        INFER_PATH, content=content, headers={HEADER_LENGTH: str(len(content) + 1)}
    )

    assert response.status_code == 400
    assert f"only {len(content)} bytes" in error_message(response)


def test_header_length_not_a_number_is_400(client, body):
    response = client.post(
        INFER_PATH, content=json.dumps(body), headers={HEADER_LENGTH: "12kB"}
    )

    assert response.status_code == 400
    assert f"the {HEADER_LENGTH} header is '12kB'" in error_message(response)


def test_binary_size_without_header_is_400(client, body):
    tensor = find(body, "video_id")
    del tensor["data"]
    tensor["parameters"] = {"binary_data_size": 8 * CANDIDATES}

    response = post_json(client, body)

    assert response.status_code == 400
    assert f"the request has no {HEADER_LENGTH} header" in error_message(response)


def binary_request(body: Body, size: int, payload: bytes) -> tuple[bytes, str]:
    """Move video_id's data into the binary part, with a declared size."""
    tensor = find(body, "video_id")
    del tensor["data"]
    tensor["parameters"] = {"binary_data_size": size}
    header = json.dumps(body).encode()
    return header + payload, str(len(header))


def test_binary_input_is_accepted(client, body):
    ids = np.asarray(find(body, "video_id")["data"], dtype="<i8").tobytes()
    content, length = binary_request(body, len(ids), ids)

    response = client.post(INFER_PATH, content=content, headers={HEADER_LENGTH: length})

    assert response.status_code == 200


def test_binary_size_not_matching_shape_is_400(client, body):
    content, length = binary_request(body, 32, b"\x00" * 32)

    response = client.post(INFER_PATH, content=content, headers={HEADER_LENGTH: length})

    assert response.status_code == 400
    assert 'input "video_id" has "binary_data_size" 32' in error_message(response)
    assert "takes 64 bytes" in error_message(response)


def test_binary_size_past_body_is_400(client, body):
    content, length = binary_request(body, 64, b"\x00" * 16)

    response = client.post(INFER_PATH, content=content, headers={HEADER_LENGTH: length})

    assert response.status_code == 400
    assert "only 16 bytes of binary data" in error_message(response)


def test_binary_bytes_left_over_is_400(client, body):
    ids = np.asarray(find(body, "video_id")["data"], dtype="<i8").tobytes()
    content, length = binary_request(body, len(ids), ids + b"\x00" * 4)

    response = client.post(INFER_PATH, content=content, headers={HEADER_LENGTH: length})

    assert response.status_code == 400
    assert "68 bytes after the JSON object" in error_message(response)
    assert "add up to 64" in error_message(response)


def test_compressed_body_is_400(client, body):
    response = client.post(
        INFER_PATH, content=json.dumps(body), headers={"Content-Encoding": "gzip"}
    )

    assert response.status_code == 400
    assert "Content-Encoding 'gzip'" in error_message(response)


def test_unknown_model_is_404_naming_served_model(client, body):
    response = client.post("/v2/models/ranker/infer", content=json.dumps(body))

    assert response.status_code == 404
    assert 'model "ranker" not found' in error_message(response)
    assert 'serves the model "watchtime"' in error_message(response)


def test_unknown_version_metadata_is_404(client):
    response = client.get("/v2/models/watchtime/versions/2")

    assert response.status_code == 404
    assert "the served version is 1" in error_message(response)


def test_unknown_v2_path_is_404_in_protocol_shape(client):
    response = client.get("/v2/repository/index")

    assert response.status_code == 404
    assert "no V2 endpoint has this path" in error_message(response)


def test_wrong_method_is_405_with_allow(client):
    response = client.get(INFER_PATH)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert "send POST" in error_message(response)


def test_live_returns_protocol_body(client):
    response = client.get("/v2/health/live")

    assert response.status_code == 200
    assert response.json() == {"live": True}


def test_model_ready_returns_name(client):
    response = client.get("/v2/models/watchtime/versions/1/ready")

    assert response.status_code == 200
    assert response.json() == {"name": "watchtime", "ready": True}
