"""The default model committed under models/ and the command that rebuilds it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.contract import WATCH_TIME_OUTPUT, FeatureSpec
from trainer.export import run_graph
from trainer.reference import reference_watch_time
from trainer.tensors import request_tensors

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "models" / "watchtime" / "1"


@pytest.fixture(scope="module")
def bundled_manifest() -> dict:
    return json.loads((BUNDLED / "manifest.json").read_text(encoding="utf-8"))


def test_bundled_model_replays_its_golden_requests(bundled_manifest):
    spec = FeatureSpec.from_dict(bundled_manifest["feature_spec"])

    for golden in bundled_manifest["golden"]:
        tensors = request_tensors(spec, golden["request"])
        outputs = run_graph(BUNDLED / "model.onnx", tensors)

        np.testing.assert_allclose(
            outputs[WATCH_TIME_OUTPUT],
            golden["outputs"][WATCH_TIME_OUTPUT],
            rtol=1e-5,
        )
        np.testing.assert_allclose(
            outputs[WATCH_TIME_OUTPUT],
            reference_watch_time(bundled_manifest, tensors),
            rtol=1e-5,
        )


def test_bundled_model_is_calibrated_on_its_holdout(bundled_manifest):
    ratio = bundled_manifest["metrics"]["calibration_ratio"]

    assert 0.9 <= ratio <= 1.1


def test_bundled_model_is_the_recommended_variant(bundled_manifest):
    assert bundled_manifest["variant"] == make_variable("MODEL_VARIANT")
    assert bundled_manifest["variant"] == "poisson"


def make_variable(name: str) -> str:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return re.search(rf"^{name} \?= (\S+)$", text, re.MULTILINE).group(1)


def test_bundled_model_rebuilds_from_the_documented_command(tmp_path, bundled_manifest):
    # The Makefile's `model` target runs these two commands; rebuilding here
    # with its seed and epoch must give the committed parameters.
    seed = make_variable("MODEL_SEED")
    log_path = tmp_path / "simulated.csv"
    env = os.environ | {"SOURCE_DATE_EPOCH": make_variable("MODEL_EPOCH")}
    commands = [
        ["simulate", "--rows", "200000", "--click-rate", "0.05", "--seed", seed],
        [
            "train",
            "--log",
            str(log_path),
            "--model-repository",
            str(tmp_path / "models"),
        ],
    ]
    commands[0] += ["--out", str(log_path)]
    commands[1] += ["--name", "watchtime", "--version", "1", "--seed", seed]
    commands[1] += ["--variant", make_variable("MODEL_VARIANT")]
    commands[1] += ["--l2", make_variable("MODEL_L2")]

    for command in commands:
        subprocess.run(
            [sys.executable, "-m", "app.cli", *command],
            check=True,
            capture_output=True,
            env=env,
            timeout=600,
        )

    rebuilt = json.loads((tmp_path / "models/watchtime/1/manifest.json").read_text())
    assert rebuilt["training"]["data"] == bundled_manifest["training"]["data"]
    assert rebuilt["linear"]["bias"] == pytest.approx(
        bundled_manifest["linear"]["bias"], rel=1e-4
    )
    for name, weights in bundled_manifest["linear"]["weights"].items():
        np.testing.assert_allclose(
            rebuilt["linear"]["weights"][name], weights, rtol=1e-3, atol=1e-4
        )
