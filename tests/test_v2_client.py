"""The Open Inference Protocol endpoints driven by Triton's own HTTP client.

The server is a real uvicorn process serving a model made by the trainer.
The expected outputs come from running the exported graph on the tensors that
the trainer builds for the manifest's golden requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from app.contract import CANDIDATE_REQUEST_INPUT, PADDING_ID, FeatureSpec
from trainer.export import run_graph
from trainer.tensors import request_tensors

from service_helpers import RunningServer

pytest_plugins = ["service_fixtures"]

MODEL = "watchtime"
OUTPUTS = ("logit", "expected_watch_time_s")
Tensors = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    """Return a Triton HTTP client of the shared service."""
    url = server.base_url.removeprefix("http://")
    client = triton.InferenceServerClient(
        url=url, connection_timeout=10.0, network_timeout=30.0
    )
    yield client
    client.close()


@pytest.fixture(scope="module")
def spec(manifest: dict[str, Any]) -> FeatureSpec:
    return FeatureSpec.from_dict(manifest["feature_spec"])


@pytest.fixture(scope="module")
def golden_tensors(manifest: dict[str, Any], spec: FeatureSpec) -> list[Tensors]:
    """Return the raw tensors of each golden request, built by the trainer."""
    return [request_tensors(spec, golden["request"]) for golden in manifest["golden"]]


def graph_outputs(model_dir: Path, tensors: Tensors) -> dict[str, np.ndarray]:
    return run_graph(model_dir / "model.onnx", tensors)


def infer_inputs(tensors: Tensors, *, binary: bool) -> list[triton.InferInput]:
    inputs = []
    for name, array in tensors.items():
        tensor = triton.InferInput(
            name, list(array.shape), np_to_triton_dtype(array.dtype)
        )
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


def requested_outputs(*names: str, binary: bool) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=binary) for name in names]


def batch(spec: FeatureSpec, requests: list[Tensors]) -> Tensors:
    """Stack single-request tensors into one batch of several requests."""
    tensors: Tensors = {}
    for feature in spec.features:
        parts = [request[feature.name] for request in requests]
        if feature.kind == "id_list":
            width = max(part.shape[1] for part in parts)
            parts = [_pad(part, width) for part in parts]
        tensors[feature.name] = np.concatenate(parts)

    rows = [len(request[CANDIDATE_REQUEST_INPUT]) for request in requests]
    tensors[CANDIDATE_REQUEST_INPUT] = np.repeat(np.arange(len(rows)), rows)
    return tensors


def _pad(matrix: np.ndarray, width: int) -> np.ndarray:
    padding = np.full((matrix.shape[0], width - matrix.shape[1]), PADDING_ID)
    return np.concatenate([matrix, padding], axis=1)


def test_server_live_is_true(client):
    assert client.is_server_live()


def test_server_ready_is_true_once_loaded(client):
    assert client.is_server_ready()


def test_model_ready_is_true_for_served_model(client):
    assert client.is_model_ready(MODEL)


def test_model_ready_is_true_for_served_version(client):
    assert client.is_model_ready(MODEL, "1")


def test_model_ready_is_false_for_other_version(client):
    assert not client.is_model_ready(MODEL, "2")


def test_model_ready_is_false_for_other_model(client):
    assert not client.is_model_ready("other")


def test_server_metadata_lists_binary_extension(client):
    metadata = client.get_server_metadata()

    assert metadata["name"] == "watchtime-ranker"
    assert metadata["extensions"] == ["binary_tensor_data"]


def test_model_metadata_names_served_version(client):
    metadata = client.get_model_metadata(MODEL)

    assert metadata["name"] == MODEL
    assert metadata["versions"] == ["1"]
    assert metadata["platform"] == "onnxruntime_onnx"


def test_model_metadata_inputs_follow_manifest(client, manifest):
    metadata = client.get_model_metadata(MODEL, "1")

    names = [tensor["name"] for tensor in metadata["inputs"]]
    assert names == [tensor["name"] for tensor in manifest["inputs"]]


def test_model_metadata_inputs_have_protocol_types(client):
    metadata = client.get_model_metadata(MODEL)

    types = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
    assert types["video_duration_s"] == "FP32"
    assert types["video_id"] == "INT64"
    assert types[CANDIDATE_REQUEST_INPUT] == "INT64"


def test_model_metadata_shapes_mark_dynamic_dims(client):
    metadata = client.get_model_metadata(MODEL)

    shapes = {tensor["name"]: tensor["shape"] for tensor in metadata["inputs"]}
    assert shapes["video_id"] == [-1]
    assert shapes["recent_video_ids"] == [-1, -1]


def test_model_metadata_lists_graph_outputs(client):
    metadata = client.get_model_metadata(MODEL)

    outputs = [(tensor["name"], tensor["datatype"]) for tensor in metadata["outputs"]]
    assert outputs == [(name, "FP32") for name in OUTPUTS]


def test_model_metadata_of_other_version_is_404(client):
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata(MODEL, "7")

    assert raised.value.status() == "404"
    assert "the served version is 1" in raised.value.message()


@pytest.mark.parametrize("index", [0, 1, 2])
def test_infer_json_matches_graph(client, golden_tensors, model_dir, index):
    tensors = golden_tensors[index]
    expected = graph_outputs(model_dir, tensors)

    result = client.infer(
        MODEL,
        infer_inputs(tensors, binary=False),
        outputs=requested_outputs(*OUTPUTS, binary=False),
    )

    for name in OUTPUTS:
        assert np.array_equal(result.as_numpy(name), expected[name]), name


@pytest.mark.parametrize("index", [0, 1, 2])
def test_infer_binary_matches_graph(client, golden_tensors, model_dir, index):
    tensors = golden_tensors[index]
    expected = graph_outputs(model_dir, tensors)

    result = client.infer(
        MODEL,
        infer_inputs(tensors, binary=True),
        outputs=requested_outputs(*OUTPUTS, binary=True),
    )

    for name in OUTPUTS:
        assert np.array_equal(result.as_numpy(name), expected[name]), name


def test_infer_binary_response_sets_parameters(client, golden_tensors):
    tensors = golden_tensors[0]

    result = client.infer(MODEL, infer_inputs(tensors, binary=True))

    output = result.get_output("logit")
    assert output["parameters"]["binary_data_size"] == 4 * len(tensors["video_id"])
    assert "data" not in output


def test_infer_without_outputs_returns_all(client, golden_tensors):
    result = client.infer(MODEL, infer_inputs(golden_tensors[0], binary=False))

    names = [output["name"] for output in result.get_response()["outputs"]]
    assert names == list(OUTPUTS)


def test_infer_returns_requested_output_only(client, golden_tensors):
    result = client.infer(
        MODEL,
        infer_inputs(golden_tensors[0], binary=False),
        outputs=requested_outputs("expected_watch_time_s", binary=False),
    )

    names = [output["name"] for output in result.get_response()["outputs"]]
    assert names == ["expected_watch_time_s"]


def test_infer_mixes_json_and_binary_outputs(client, golden_tensors, model_dir):
    tensors = golden_tensors[1]
    expected = graph_outputs(model_dir, tensors)
    outputs = [
        triton.InferRequestedOutput("logit", binary_data=True),
        triton.InferRequestedOutput("expected_watch_time_s", binary_data=False),
    ]

    result = client.infer(MODEL, infer_inputs(tensors, binary=False), outputs=outputs)

    assert "data" in result.get_output("expected_watch_time_s")
    assert np.array_equal(result.as_numpy("logit"), expected["logit"])
    assert np.array_equal(
        result.as_numpy("expected_watch_time_s"), expected["expected_watch_time_s"]
    )


def test_infer_names_served_version(client, golden_tensors):
    result = client.infer(MODEL, infer_inputs(golden_tensors[0], binary=True))

    response = result.get_response()
    assert response["model_name"] == MODEL
    assert response["model_version"] == "1"


def test_infer_echoes_request_id(client, golden_tensors):
    result = client.infer(
        MODEL, infer_inputs(golden_tensors[0], binary=True), request_id="page-7"
    )

    assert result.get_response()["id"] == "page-7"


def test_infer_on_served_version_path(client, golden_tensors, model_dir):
    tensors = golden_tensors[2]
    expected = graph_outputs(model_dir, tensors)

    result = client.infer(MODEL, infer_inputs(tensors, binary=True), model_version="1")

    assert np.array_equal(result.as_numpy("logit"), expected["logit"])


def test_infer_batch_of_requests_matches_graph(client, golden_tensors, spec, model_dir):
    tensors = batch(spec, golden_tensors)
    expected = graph_outputs(model_dir, tensors)

    result = client.infer(MODEL, infer_inputs(tensors, binary=True))

    assert np.array_equal(result.as_numpy("logit"), expected["logit"])


def test_infer_batch_scores_like_single_requests(client, golden_tensors, spec):
    single = [
        client.infer(MODEL, infer_inputs(tensors, binary=True)).as_numpy("logit")
        for tensors in golden_tensors
    ]

    result = client.infer(MODEL, infer_inputs(batch(spec, golden_tensors), binary=True))

    assert np.allclose(result.as_numpy("logit"), np.concatenate(single), rtol=1e-6)


def test_infer_on_other_version_is_404(client, golden_tensors):
    with pytest.raises(InferenceServerException) as raised:
        client.infer(
            MODEL, infer_inputs(golden_tensors[0], binary=True), model_version="3"
        )

    assert raised.value.status() == "404"
    assert 'version "3"' in raised.value.message()
    assert "the served version is 1" in raised.value.message()


def test_infer_on_unknown_model_is_404(client, golden_tensors):
    with pytest.raises(InferenceServerException) as raised:
        client.infer("ranker", infer_inputs(golden_tensors[0], binary=True))

    assert raised.value.status() == "404"
    assert 'serves the model "watchtime"' in raised.value.message()


def test_infer_error_reaches_client_message(client, golden_tensors):
    tensors = dict(golden_tensors[0])
    tensors["video_id"] = tensors["video_id"].copy()
    tensors["video_id"][1] = -5

    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, infer_inputs(tensors, binary=True))

    assert raised.value.status() == "400"
    assert 'input "video_id" has the number -5 at [1]' in raised.value.message()
