"""Locating, checking and loading a model made by the trainer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.contract import LOGIT_OUTPUT, WATCH_TIME_OUTPUT
from app.decoding import parse_request_object
from app.errors import ModelLoadError
from app.model import load_model, locate_model


@pytest.fixture
def repository_copy(model_repository: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_repository, tmp_path / "models"))


def feature_named(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in manifest["feature_spec"]["features"] if f["name"] == name)


def edit_manifest(version_dir: Path, edit) -> Path:
    path = version_dir / "manifest.json"
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    edit(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


def load_copy(repository: Path):
    return load_model(locate_model(repository))


def test_load_model_reads_name_version_and_spec(model_repository, manifest):
    model = load_model(locate_model(model_repository))

    assert model.name == "watchtime"
    assert model.version == 1
    assert len(model.spec.features) == len(manifest["feature_spec"]["features"])


def test_predict_returns_both_outputs(model_repository, manifest):
    model = load_model(locate_model(model_repository))
    request = parse_request_object(manifest["golden"][0]["request"])
    batch = model.encoder.encode([request])

    outputs = model.predict(batch.tensors)

    count = len(request.candidates)
    assert outputs[LOGIT_OUTPUT].shape == (count,)
    np.testing.assert_allclose(
        outputs[WATCH_TIME_OUTPUT], np.exp(outputs[LOGIT_OUTPUT]), rtol=1e-5
    )


def test_load_model_with_any_thread_count(model_repository):
    model = load_model(locate_model(model_repository), intra_op_threads=0)

    assert model.version == 1


def test_load_model_spinning_off_by_default(model_repository):
    model = load_model(locate_model(model_repository), intra_op_threads=2)

    assert not model.intra_op_spinning


def test_load_model_spins_when_requested(model_repository):
    location = locate_model(model_repository)

    model = load_model(location, intra_op_threads=2, spinning=True)

    assert model.intra_op_spinning


def test_load_model_one_thread_never_spins(model_repository):
    location = locate_model(model_repository)

    model = load_model(location, intra_op_threads=1, spinning=True)

    assert not model.intra_op_spinning


def test_locate_model_picks_highest_version(repository_copy):
    model_dir = repository_copy / "watchtime"
    shutil.copytree(model_dir / "1", model_dir / "10")
    shutil.copytree(model_dir / "1", model_dir / "9")
    (model_dir / "11-draft").mkdir()

    location = locate_model(repository_copy)

    assert location.version == 10


def test_locate_model_honours_pinned_version(repository_copy):
    model_dir = repository_copy / "watchtime"
    shutil.copytree(model_dir / "1", model_dir / "2")

    location = locate_model(repository_copy, version=1)

    assert location.directory == model_dir / "1"


def test_locate_model_rejects_missing_pinned_version(repository_copy):
    with pytest.raises(ModelLoadError, match="WATCHTIME_MODEL_VERSION=3"):
        locate_model(repository_copy, version=3)


def test_locate_model_rejects_unknown_name(repository_copy):
    with pytest.raises(ModelLoadError, match="available: \\['watchtime'\\]"):
        locate_model(repository_copy, name="ranker")


def test_locate_model_rejects_empty_repository(tmp_path):
    with pytest.raises(ModelLoadError, match="contains no model"):
        locate_model(tmp_path)


def test_locate_model_rejects_model_without_versions(tmp_path):
    (tmp_path / "watchtime").mkdir()

    with pytest.raises(ModelLoadError, match="no version directory"):
        locate_model(tmp_path)


def test_load_model_rejects_other_manifest_format(repository_copy):
    def bump_format(manifest: dict[str, Any]) -> None:
        manifest["format"] = 2

    path = edit_manifest(repository_copy / "watchtime" / "1", bump_format)

    with pytest.raises(ModelLoadError) as raised:
        load_copy(repository_copy)

    assert str(path) in str(raised.value)
    assert "unsupported format 2" in str(raised.value)


def test_load_model_rejects_unknown_hash(repository_copy):
    def rename_hash(manifest: dict[str, Any]) -> None:
        manifest["hash_algorithm"] = "murmur3"

    edit_manifest(repository_copy / "watchtime" / "1", rename_hash)

    with pytest.raises(ModelLoadError, match="unsupported hash_algorithm 'murmur3'"):
        load_copy(repository_copy)


def test_load_model_rejects_non_object_manifest(repository_copy):
    path = repository_copy / "watchtime" / "1" / "manifest.json"
    path.write_text("[1, 2]", encoding="utf-8")

    with pytest.raises(ModelLoadError, match="must contain a JSON object"):
        load_copy(repository_copy)


def test_load_model_rejects_invalid_feature_spec(repository_copy):
    def break_kind(manifest: dict[str, Any]) -> None:
        manifest["feature_spec"]["features"][0]["kind"] = "embedding"

    edit_manifest(repository_copy / "watchtime" / "1", break_kind)

    with pytest.raises(ModelLoadError, match="invalid feature_spec"):
        load_copy(repository_copy)


def test_load_model_rejects_feature_missing_from_graph(repository_copy):
    def rename_feature(manifest: dict[str, Any]) -> None:
        feature_named(manifest, "channel_id")["name"] = "channel"

    edit_manifest(repository_copy / "watchtime" / "1", rename_feature)

    with pytest.raises(ModelLoadError) as raised:
        load_copy(repository_copy)

    assert "lacks the inputs ['channel']" in str(raised.value)


def test_load_model_rejects_wrong_input_kind(repository_copy):
    def make_numeric(manifest: dict[str, Any]) -> None:
        feature_named(manifest, "channel_id").update(
            kind="numeric",
            default=0.0,
            example=0.0,
            transform={"type": "quantile_cdf", "knots": [0.0, 1.0], "cdf": [0, 1]},
        )

    edit_manifest(repository_copy / "watchtime" / "1", make_numeric)

    with pytest.raises(ModelLoadError, match="needs tensor\\(float\\) of rank 1"):
        load_copy(repository_copy)


def test_load_model_rejects_golden_mismatch(repository_copy):
    def shift_logits(manifest: dict[str, Any]) -> None:
        outputs = manifest["golden"][1]["outputs"]
        outputs["logit"] = [value + 0.01 for value in outputs["logit"]]

    path = edit_manifest(repository_copy / "watchtime" / "1", shift_logits)

    with pytest.raises(ModelLoadError) as raised:
        load_copy(repository_copy)

    assert f"{path}: golden[1]: logit differs" in str(raised.value)
    assert "max relative error" in str(raised.value)


def test_load_model_accepts_golden_within_tolerance(repository_copy):
    def nudge(manifest: dict[str, Any]) -> None:
        outputs = manifest["golden"][0]["outputs"]
        outputs["expected_watch_time_s"] = [
            value * (1 + 2e-5) for value in outputs["expected_watch_time_s"]
        ]

    edit_manifest(repository_copy / "watchtime" / "1", nudge)

    model = load_copy(repository_copy)

    assert model.version == 1


def test_load_model_rejects_missing_golden(repository_copy):
    def drop_golden(manifest: dict[str, Any]) -> None:
        manifest["golden"] = []

    edit_manifest(repository_copy / "watchtime" / "1", drop_golden)

    with pytest.raises(ModelLoadError, match="golden list is missing or empty"):
        load_copy(repository_copy)


def test_load_model_rejects_corrupted_graph(repository_copy):
    graph = repository_copy / "watchtime" / "1" / "model.onnx"
    graph.write_bytes(b"not a protobuf")

    with pytest.raises(ModelLoadError, match="model.onnx fails the ONNX checker"):
        load_copy(repository_copy)


def test_load_model_rejects_linear_parameter_mismatch(repository_copy):
    def shift_bias(manifest: dict[str, Any]) -> None:
        manifest["linear"]["bias"] += 0.01

    path = edit_manifest(repository_copy / "watchtime" / "1", shift_bias)

    with pytest.raises(ModelLoadError) as raised:
        load_copy(repository_copy)

    assert f"{path}: golden[0]" in str(raised.value)
    assert "linear parameters" in str(raised.value)


def test_load_model_rejects_malformed_linear_parameters(repository_copy):
    def drop_weights(manifest: dict[str, Any]) -> None:
        del manifest["linear"]["weights"]["video_id"]

    edit_manifest(repository_copy / "watchtime" / "1", drop_weights)

    with pytest.raises(ModelLoadError, match="cannot be evaluated"):
        load_copy(repository_copy)


def test_load_model_rejects_missing_tensor_lists(repository_copy):
    def drop_inputs(manifest: dict[str, Any]) -> None:
        del manifest["inputs"]

    edit_manifest(repository_copy / "watchtime" / "1", drop_inputs)

    with pytest.raises(ModelLoadError, match="inputs must be a list"):
        load_copy(repository_copy)


def test_load_model_rejects_inputs_the_graph_lacks(repository_copy):
    def rename_input(manifest: dict[str, Any]) -> None:
        manifest["inputs"][0]["name"] = "renamed"

    edit_manifest(repository_copy / "watchtime" / "1", rename_input)

    with pytest.raises(ModelLoadError, match="inputs declares"):
        load_copy(repository_copy)
