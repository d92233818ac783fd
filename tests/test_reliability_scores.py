"""Scores at extreme inputs: finite, ordered, and equal to the trainer's.

The logit of a linear model is bounded whatever a request sends: numeric
values pass through the quantile CDF, which maps them into [0, 1], and every
categorical or id-list value selects one of finitely many weights. So the
largest reachable logit is the bias plus each feature's largest contribution,
and exp of it is finite as long as that bound stays below the graph's cap.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest

from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT, FeatureSpec
from app.linear import linear_logit
from trainer.export import ExportError, check_logit_range, run_graph
from trainer.graph import LOGIT_CAP
from trainer.parameters import load_network
from trainer.reference import logit_range
from trainer.tensors import request_tensors

pytest_plugins = ["service_fixtures"]

FLOAT32_MAX = float(np.finfo(np.float32).max)
NUMERIC_EXTREMES = [FLOAT32_MAX, -FLOAT32_MAX, 0.0, -1e30, 1e30, 1e-45]
ID_EXTREMES: list[Any] = [0, 2**62 - 1, "", "x" * 1024, "\u00e9\u4e2d\U0001f600"]


def extreme_request(spec: FeatureSpec) -> dict[str, Any]:
    """Build candidates that send each feature's extreme values in turn."""
    candidates = []
    for index in range(len(NUMERIC_EXTREMES) * len(ID_EXTREMES)):
        features: dict[str, Any] = {}
        for feature in spec.of_source("candidate"):
            if feature.kind == "numeric":
                features[feature.name] = NUMERIC_EXTREMES[index % len(NUMERIC_EXTREMES)]
            elif feature.kind == "categorical" and not feature.value_from_id:
                features[feature.name] = ID_EXTREMES[index % len(ID_EXTREMES)]
        candidates.append({"id": f"extreme-{index}", "features": features})
    context: dict[str, Any] = {}
    for feature in spec.of_source("context"):
        if feature.kind == "id_list":
            context[feature.name] = [2**62 - 1 - i for i in range(1000)]
        elif feature.kind == "categorical":
            context[feature.name] = "x" * 1024
    return {"context": context, "candidates": candidates}


@pytest.fixture(scope="module")
def spec(manifest: dict[str, Any]) -> FeatureSpec:
    return FeatureSpec.from_dict(manifest["feature_spec"])


@pytest.fixture(scope="module")
def extreme_ranking(server, spec) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return an extreme request and the server's ranking of it."""
    request = extreme_request(spec)
    response = httpx.post(server.base_url + "/v1/rank", json=request, timeout=30)
    assert response.status_code == 200, response.text
    return request, response.json()


def test_extreme_inputs_give_finite_positive_scores(extreme_ranking):
    _, ranking = extreme_ranking

    scores = np.array([item["expected_watch_time_s"] for item in ranking["items"]])

    assert np.isfinite(scores).all()
    assert (scores > 0).all()


def test_extreme_inputs_are_ranked_highest_first(extreme_ranking):
    _, ranking = extreme_ranking

    scores = [item["expected_watch_time_s"] for item in ranking["items"]]

    assert scores == sorted(scores, reverse=True)


def test_extreme_scores_equal_the_trainer_graph(extreme_ranking, model_dir, spec):
    request, ranking = extreme_ranking
    outputs = run_graph(model_dir / "model.onnx", request_tensors(spec, request))
    ids = [c["id"] for c in request["candidates"]]
    expected = dict(zip(ids, outputs[WATCH_TIME_OUTPUT].tolist(), strict=True))

    served = {item["id"]: item["expected_watch_time_s"] for item in ranking["items"]}

    np.testing.assert_allclose(
        [served[i] for i in ids], [expected[i] for i in ids], rtol=1e-6
    )


def test_extreme_logits_equal_the_manifest_parameters(extreme_ranking, manifest, spec):
    request, ranking = extreme_ranking
    tensors = request_tensors(spec, request)
    expected = linear_logit(spec, manifest["linear"], tensors)
    ids = [c["id"] for c in request["candidates"]]

    served = {item["id"]: item[LOGIT_OUTPUT] for item in ranking["items"]}

    np.testing.assert_allclose([served[i] for i in ids], expected, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def bounds(manifest: dict[str, Any]) -> tuple[float, float]:
    return logit_range(load_network(manifest))


def test_reachable_logits_stay_below_the_graph_cap(bounds):
    low, high = bounds

    assert high < LOGIT_CAP
    assert np.isfinite(np.exp(np.float32(high)))
    assert np.exp(np.float32(low)) > 0


def test_extreme_logits_stay_within_the_reachable_range(extreme_ranking, bounds):
    _, ranking = extreme_ranking
    low, high = bounds

    logits = [item[LOGIT_OUTPUT] for item in ranking["items"]]

    assert min(logits) >= low - 1e-4
    assert max(logits) <= high + 1e-4


def test_export_rejects_a_logit_past_the_cap(manifest):
    network = load_network(manifest)
    bias = network.bias + LOGIT_CAP

    with pytest.raises(ExportError, match="smaller --l2"):
        check_logit_range(replace(network, bias=bias))


def test_export_rejects_a_logit_below_the_floor(manifest):
    network = load_network(manifest)
    bias = network.bias - 2 * LOGIT_CAP

    with pytest.raises(ExportError, match="beyond"):
        check_logit_range(replace(network, bias=bias))
