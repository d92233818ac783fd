"""Training variants: their outputs, parameters, replication and the service."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT, FeatureSpec
from app.model import load_model, locate_model
from trainer.cli import build_parser, fit_options, hidden_layers, main
from trainer.design import design_matrix
from trainer.export import run_graph
from trainer.features import fit_spec
from trainer.fit import (
    DEFAULT_L2,
    POISSON_DEFAULT_L2,
    FitOptions,
    fit_weighted_lr,
    weighted_loss,
)
from trainer.logs import write_log
from trainer.mlp import NetworkOptions, network_spec
from trainer.outputs import (
    CLICK_PROBABILITY_OUTPUT,
    POISSON,
    VARIANTS,
    WEIGHTED_CLICK,
    WEIGHTED_MLP,
)
from trainer.parameters import PARAMETERS_FILE, load_network
from trainer.pipeline import TrainOptions, describe_data, train
from trainer.reference import logit_range, reference_outputs
from trainer.resample import ResampleOptions, replicate, replication_unit
from trainer.selection import select_l2
from trainer.tensors import log_tensors, request_tensors
from trainer.variants import VariantOptions, fit_variant

from service_helpers import run_server


def read_manifest(directory: Path) -> dict:
    return json.loads((directory / "manifest.json").read_text(encoding="utf-8"))


def golden_tensors(directory: Path) -> dict[str, np.ndarray]:
    manifest = read_manifest(directory)
    spec = FeatureSpec.from_dict(manifest["feature_spec"])
    return request_tensors(spec, manifest["golden"][0]["request"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_manifest_records_its_variant(variant_model_dirs, variant):
    manifest = read_manifest(variant_model_dirs[variant])

    assert manifest["variant"] == variant


@pytest.mark.parametrize("variant", VARIANTS)
def test_manifest_outputs_match_the_graph(variant_model_dirs, variant):
    directory = variant_model_dirs[variant]
    outputs = run_graph(directory / "model.onnx", golden_tensors(directory))

    declared = [o["name"] for o in read_manifest(directory)["outputs"]]

    assert declared == list(outputs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_logit_range_contains_golden_logits(variant_model_dirs, variant):
    directory = variant_model_dirs[variant]
    network = load_network(read_manifest(directory), directory)
    low, high = logit_range(network)

    logits = run_graph(directory / "model.onnx", golden_tensors(directory))

    assert low <= logits[LOGIT_OUTPUT].min()
    assert logits[LOGIT_OUTPUT].max() <= high


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_output_is_described(variant_model_dirs, variant):
    outputs = read_manifest(variant_model_dirs[variant])["outputs"]

    assert all(output["description"] for output in outputs)


def test_click_probability_only_in_weighted_click(variant_model_dirs):
    with_click = {
        variant
        for variant, directory in variant_model_dirs.items()
        if CLICK_PROBABILITY_OUTPUT
        in [o["name"] for o in read_manifest(directory)["outputs"]]
    }

    assert with_click == {WEIGHTED_CLICK}


def test_weighted_click_serves_odds_times_no_click(variant_model_dirs):
    directory = variant_model_dirs[WEIGHTED_CLICK]

    outputs = run_graph(directory / "model.onnx", golden_tensors(directory))

    expected = np.exp(outputs[LOGIT_OUTPUT]) * (1 - outputs[CLICK_PROBABILITY_OUTPUT])
    np.testing.assert_allclose(outputs[WATCH_TIME_OUTPUT], expected, rtol=1e-5)


def test_click_probability_within_unit_interval(variant_model_dirs):
    directory = variant_model_dirs[WEIGHTED_CLICK]

    probability = run_graph(directory / "model.onnx", golden_tensors(directory))[
        CLICK_PROBABILITY_OUTPUT
    ]

    assert probability.min() > 0
    assert probability.max() < 1


def test_mlp_parameters_beside_manifest(variant_model_dirs):
    directory = variant_model_dirs[WEIGHTED_MLP]

    manifest = read_manifest(directory)

    assert "linear" not in manifest
    assert manifest["network"]["hidden_units"] == [16, 8]
    assert (directory / PARAMETERS_FILE).is_file()


def test_linear_parameters_stay_in_manifest(variant_model_dirs):
    linear = [v for v in VARIANTS if v != WEIGHTED_MLP]

    files = [(variant_model_dirs[v] / PARAMETERS_FILE).exists() for v in linear]

    assert not any(files)


def test_mlp_parameters_reject_wrong_hash(variant_model_dirs, tmp_path):
    copy = tmp_path / "1"
    shutil.copytree(variant_model_dirs[WEIGHTED_MLP], copy)
    manifest = read_manifest(copy)
    manifest["network"]["parameters"]["sha256"] = "0" * 64

    with pytest.raises(ValueError, match="SHA-256"):
        load_network(manifest, copy)


def test_mlp_manifest_needs_its_directory(variant_model_dirs):
    manifest = read_manifest(variant_model_dirs[WEIGHTED_MLP])

    with pytest.raises(ValueError, match=PARAMETERS_FILE):
        load_network(manifest)


def test_mlp_first_layer_reads_fewer_buckets(simulated_log):
    spec = fit_spec(simulated_log.head(2000))

    narrow = network_spec(spec)

    assert narrow.by_name("video_id").transform["buckets"] == 4096
    assert narrow.crosses == ()


def test_mlp_training_is_deterministic(tmp_path, simulated_log, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    log = simulated_log.head(3000)
    data = describe_data(log, "simulator", [])
    network = NetworkOptions(hidden=(8,), max_epochs=2)
    options = {"seed": 2, "variant": WEIGHTED_MLP, "network": network}

    first = train(log, data, TrainOptions(repository=tmp_path / "a", **options))
    second = train(log, data, TrainOptions(repository=tmp_path / "b", **options))

    for name in ("model.onnx", "manifest.json", PARAMETERS_FILE):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_mlp_without_hidden_layers_is_linear(simulated_log):
    log = simulated_log.head(3000)
    options = VariantOptions(
        WEIGHTED_MLP, network=NetworkOptions(hidden=(), max_epochs=1)
    )

    fitted = fit_variant(fit_spec(log), log, options, seed=0)

    assert fitted.network.is_linear


def test_network_options_reject_an_empty_layer():
    with pytest.raises(ValueError, match="hidden layer sizes"):
        NetworkOptions(hidden=(64, 0))


def test_poisson_mean_equals_training_mean(simulated_log):
    log = simulated_log.head(4000)
    spec = fit_spec(log)

    fitted = fit_variant(spec, log, VariantOptions(POISSON), seed=0)

    predicted = reference_outputs(fitted.network, log_tensors(spec, log))
    mean_ratio = predicted[WATCH_TIME_OUTPUT].mean() / log["watch_time_s"].mean()
    assert mean_ratio == pytest.approx(1.0, abs=1e-3)


def test_selection_keeps_lowest_validation_loss(simulated_log):
    log = simulated_log.head(4000)
    spec = fit_spec(log)
    features = design_matrix(spec, log_tensors(spec, log))
    options = FitOptions(l2_grid=(0.01, 0.1, 1.0))

    selection, _ = select_l2(
        fit_weighted_lr, weighted_loss, features, log, options, seed=0
    )

    assert len(selection.losses) >= 2
    assert selection.losses[selection.l2] == min(selection.losses.values())


def test_manifest_records_selected_l2(tmp_path, simulated_log):
    log = simulated_log.head(3000)
    data = describe_data(log, "simulator", [])
    fit = FitOptions(l2_grid=(0.03, 0.3))

    directory = train(log, data, TrainOptions(repository=tmp_path, fit=fit))

    options = read_manifest(directory)["training"]["options"]
    assert options["l2"] in (0.03, 0.3)
    assert str(options["l2"]) in options["validation_losses"]


def test_fit_options_reject_a_negative_l2():
    with pytest.raises(ValueError, match="-1"):
        FitOptions(l2_grid=(0.1, -1.0))


def test_replicate_copies_positives_by_watch_time():
    clicked = np.array([1, 0, 1, 1])
    watch_time = np.array([3.0, 0.0, 10.0, 0.0])

    replication = replicate(clicked, watch_time, 1.0, np.random.default_rng(0))

    copies = np.bincount(replication.rows, minlength=4)
    assert copies.tolist() == [3, 1, 10, 0]


def test_replicate_draws_the_fractional_copy():
    clicked = np.ones(20_000, dtype=np.int64)
    watch_time = np.full(20_000, 2.25)

    replication = replicate(clicked, watch_time, 1.0, np.random.default_rng(0))

    copies = np.bincount(replication.rows, minlength=20_000)
    assert set(copies.tolist()) == {2, 3}
    assert copies.mean() == pytest.approx(2.25, abs=0.02)


def test_replication_unit_one_second_within_budget():
    clicked = np.array([1, 0, 0])
    watch_time = np.array([100.0, 0.0, 0.0])

    assert replication_unit(clicked, watch_time, max_rows=1000) == 1.0


def test_replication_unit_fits_the_row_budget():
    clicked = np.array([1, 1, 0, 0])
    watch_time = np.array([600.0, 400.0, 0.0, 0.0])

    unit = replication_unit(clicked, watch_time, max_rows=102)

    assert unit == pytest.approx(10.0)


def test_resample_options_reject_a_zero_unit():
    with pytest.raises(ValueError, match="unit"):
        ResampleOptions(unit_s=0.0)


def test_resampled_records_its_rows_and_unit(variant_model_dirs):
    options = read_manifest(variant_model_dirs["resampled"])["training"]["options"]

    assert options["rows"] == options["train_rows"]
    assert options["unit_s"] >= 1.0


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_loads_every_variant(variant_model_dirs, variant):
    directory = variant_model_dirs[variant]
    location = locate_model(directory.parents[1])

    model = load_model(location)

    assert model.version == 1


def test_hidden_layers_parses_sizes():
    assert hidden_layers("256,128,64") == (256, 128, 64)


def test_hidden_layers_parses_none():
    assert hidden_layers("none") == ()


def test_train_parser_defaults_to_weighted():
    args = build_parser().parse_args(["train", "--log", "log.csv"])

    assert args.variant == "weighted"


def test_cli_trains_a_chosen_variant(tmp_path, simulated_log):
    log_path = tmp_path / "log.csv"
    write_log(simulated_log.head(3000), log_path)
    repository = tmp_path / "models"

    status = main(
        [
            "train",
            "--log",
            str(log_path),
            "--model-repository",
            str(repository),
            "--variant",
            "weighted+click",
        ]
    )

    assert status == 0
    assert read_manifest(repository / "watchtime" / "1")["variant"] == "weighted+click"


def test_cli_rejects_an_unknown_variant(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--log", str(tmp_path / "log.csv"), "--variant", "tobit"])

    assert "tobit" in capsys.readouterr().err


def test_server_serves_click_probability(variant_model_dirs, tmp_path):
    directory = variant_model_dirs[WEIGHTED_CLICK]
    request = read_manifest(directory)["golden"][0]["request"]

    with run_server(directory.parents[1], tmp_path / "server.log") as server:
        response = httpx.post(server.base_url + "/v1/rank", json=request, timeout=30)
    items = response.json()["items"]
    scores = [item[WATCH_TIME_OUTPUT] for item in items]

    assert response.status_code == 200
    assert len(items) == len(request["candidates"])
    assert scores == sorted(scores, reverse=True)
    for item in items:
        assert 0 < item[CLICK_PROBABILITY_OUTPUT] < 1
        corrected = np.exp(item[LOGIT_OUTPUT]) * (1 - item[CLICK_PROBABILITY_OUTPUT])
        assert item[WATCH_TIME_OUTPUT] == pytest.approx(corrected, rel=1e-5)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--variant", "poisson"], POISSON_DEFAULT_L2),
        (["--variant", "weighted"], DEFAULT_L2),
        (["--variant", "poisson", "--l2", "0.5"], 0.5),
    ],
)
def test_train_l2_defaults_per_variant(arguments, expected):
    args = build_parser().parse_args(["train", "--log", "log.csv", *arguments])

    assert fit_options(args).l2 == expected
