"""The ONNX graph against an independent numpy computation from the manifest.

The first tests check the shared `weighted` model in detail; the tests at the
end check every output of every training variant's graph.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnx
import pytest

from app.contract import (
    CANDIDATE_REQUEST_INPUT,
    LOGIT_OUTPUT,
    PADDING_ID,
    WATCH_TIME_OUTPUT,
    FeatureSpec,
    category_id,
)
from trainer.export import run_graph
from trainer.outputs import VARIANTS
from trainer.parameters import load_network
from trainer.reference import reference_logit, reference_outputs, reference_watch_time
from trainer.tensors import request_tensors

RELATIVE_TOLERANCE = 1e-5


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual / expected - 1.0)))


def random_tensors(spec: FeatureSpec, seed: int) -> dict[str, np.ndarray]:
    """Draw raw tensors for 3 requests, with values inside and outside the knots."""
    rng = np.random.default_rng(seed)
    requests, candidates = 3, 40
    rows = {"context": requests, "candidate": candidates}
    tensors = {
        CANDIDATE_REQUEST_INPUT: rng.integers(0, requests, candidates).astype(np.int64)
    }
    for feature in spec.features:
        count = rows[feature.source]
        if feature.kind == "numeric":
            knots = feature.transform["knots"]
            low, high = knots[0] - 10.0, knots[-1] * 1.5 + 10.0
            tensors[feature.name] = rng.uniform(low, high, count).astype(np.float32)
        elif feature.kind == "categorical":
            tensors[feature.name] = random_ids(rng, count)
        else:
            ids = random_ids(rng, count * 6).reshape(count, 6)
            ids[rng.random(ids.shape) < 0.4] = PADDING_ID
            tensors[feature.name] = ids
    return tensors


def random_ids(rng: np.random.Generator, count: int) -> np.ndarray:
    small = rng.integers(0, 1000, count)
    hashed = [category_id(f"video-{n}") for n in rng.integers(0, 10**6, count)]
    return np.where(rng.random(count) < 0.5, small, hashed).astype(np.int64)


def test_graph_matches_numpy_on_golden_requests(model_dir, manifest):
    spec = FeatureSpec.from_dict(manifest["feature_spec"])

    for golden in manifest["golden"]:
        tensors = request_tensors(spec, golden["request"])
        graph = run_graph(model_dir / "model.onnx", tensors)[WATCH_TIME_OUTPUT]
        expected = reference_watch_time(manifest, tensors)

        assert relative_error(graph, expected) <= RELATIVE_TOLERANCE


@pytest.mark.parametrize("seed", range(5))
def test_graph_matches_numpy_on_random_inputs(model_dir, manifest, seed):
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    tensors = random_tensors(spec, seed)

    graph = run_graph(model_dir / "model.onnx", tensors)[WATCH_TIME_OUTPUT]
    expected = reference_watch_time(manifest, tensors)

    assert relative_error(graph, expected) <= RELATIVE_TOLERANCE


def test_graph_watch_time_is_exp_of_logit(model_dir, manifest):
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    tensors = random_tensors(spec, seed=7)

    outputs = run_graph(model_dir / "model.onnx", tensors)

    np.testing.assert_allclose(
        np.exp(outputs[LOGIT_OUTPUT]), outputs[WATCH_TIME_OUTPUT], rtol=1e-6
    )


def test_manifest_golden_outputs_replay(model_dir, manifest):
    spec = FeatureSpec.from_dict(manifest["feature_spec"])

    for golden in manifest["golden"]:
        outputs = run_graph(
            model_dir / "model.onnx", request_tensors(spec, golden["request"])
        )

        np.testing.assert_allclose(
            outputs[LOGIT_OUTPUT], golden["outputs"][LOGIT_OUTPUT], rtol=1e-6
        )


def test_golden_requests_exercise_defaults(manifest):
    last: dict[str, Any] = manifest["golden"][-1]["request"]

    assert last["context"] == {}
    assert last["candidates"][1]["features"] == {}


def test_graph_passes_the_onnx_checker(model_dir):
    model = onnx.load(model_dir / "model.onnx")

    onnx.checker.check_model(model, full_check=True)


def test_reference_logit_ignores_padding_ids(manifest):
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    tensors = random_tensors(spec, seed=3)
    padded = dict(tensors)
    padded["recent_video_ids"] = np.concatenate(
        [tensors["recent_video_ids"], np.full((3, 4), PADDING_ID, np.int64)], axis=1
    )

    np.testing.assert_allclose(
        reference_logit(manifest, padded), reference_logit(manifest, tensors)
    )


def variant_manifest(directory) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))


def output_errors(directory, tensors: dict[str, np.ndarray]) -> dict[str, float]:
    """Return each output's largest relative error, the logit's through exp."""
    network = load_network(variant_manifest(directory), directory)
    graph = run_graph(directory / "model.onnx", tensors)
    expected = reference_outputs(network, tensors)
    graph[LOGIT_OUTPUT] = np.exp(graph[LOGIT_OUTPUT])
    expected[LOGIT_OUTPUT] = np.exp(expected[LOGIT_OUTPUT])
    return {name: relative_error(graph[name], expected[name]) for name in expected}


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_graph_matches_numpy_on_golden_requests(variant_model_dirs, variant):
    directory = variant_model_dirs[variant]
    manifest = variant_manifest(directory)
    spec = FeatureSpec.from_dict(manifest["feature_spec"])

    for golden in manifest["golden"]:
        errors = output_errors(directory, request_tensors(spec, golden["request"]))

        for name, error in errors.items():
            assert error <= RELATIVE_TOLERANCE, name


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_graph_matches_numpy_on_random_inputs(
    variant_model_dirs, variant, seed
):
    directory = variant_model_dirs[variant]
    spec = FeatureSpec.from_dict(variant_manifest(directory)["feature_spec"])

    errors = output_errors(directory, random_tensors(spec, seed))

    for name, error in errors.items():
        assert error <= RELATIVE_TOLERANCE, name


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_golden_outputs_replay(variant_model_dirs, variant):
    directory = variant_model_dirs[variant]
    manifest = variant_manifest(directory)
    spec = FeatureSpec.from_dict(manifest["feature_spec"])

    for golden in manifest["golden"]:
        outputs = run_graph(
            directory / "model.onnx", request_tensors(spec, golden["request"])
        )

        for name, recorded in golden["outputs"].items():
            np.testing.assert_allclose(outputs[name], recorded, rtol=1e-6)
