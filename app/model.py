"""The model wrapper: finding, checking and running one ONNX model version.

A model is ready to serve only after `load_model` has read its manifest,
opened the graph, matched the graph's inputs and outputs with the feature
spec, and replayed the manifest's golden requests through the same encoder
that serves requests. Every failure raises ModelLoadError naming the file.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.checker
import onnx.shape_inference
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
from pydantic import ValidationError

from app.contract import (
    CANDIDATE_REQUEST_INPUT,
    HASH_ALGORITHM,
    LOGIT_OUTPUT,
    MANIFEST_FORMAT,
    WATCH_TIME_OUTPUT,
    FeatureSpec,
    tensor_dtype,
)
from app.decoding import ParsedRequest, parse_request_object
from app.encoding import FeatureEncoder, Tensors
from app.errors import InvalidFeature, ModelLoadError
from app.linear import linear_logit
from app.schemas import RankRequest
from app.settings import Settings

MANIFEST_FILE = "manifest.json"
GRAPH_FILE = "model.onnx"
OUTPUTS = (LOGIT_OUTPUT, WATCH_TIME_OUTPUT)

GOLDEN_RTOL = 1e-4
"""Relative tolerance of the golden replay, above float32 rounding noise."""

GOLDEN_ATOL = 1e-6
"""Absolute tolerance of the golden replay, for logits close to zero."""

SPINNING_CONFIG_KEY = "session.intra_op.allow_spinning"
"""onnxruntime session config entry: "1" lets idle intra-op threads spin."""

_VERSION_DIRECTORY = re.compile(r"[1-9][0-9]*")
_ONNX_TYPES = {np.float32: "tensor(float)", np.int64: "tensor(int64)"}
_ORT_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.InvalidGraph,
    ort_errors.InvalidProtobuf,
    ort_errors.NoSuchFile,
    ort_errors.RuntimeException,
    OSError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelLocation:
    """Directory of one model version in the model repository."""

    name: str
    version: int
    directory: Path

    @property
    def manifest_path(self) -> Path:
        return self.directory / MANIFEST_FILE

    @property
    def graph_path(self) -> Path:
        return self.directory / GRAPH_FILE


class RankingModel:
    """A loaded model version with its onnxruntime session."""

    def __init__(
        self,
        location: ModelLocation,
        manifest: dict[str, Any],
        spec: FeatureSpec,
        session: ort.InferenceSession,
    ) -> None:
        self.location = location
        self.manifest = manifest
        self.spec = spec
        self.encoder = FeatureEncoder(spec)
        self._session = session

    @property
    def name(self) -> str:
        return self.location.name

    @property
    def version(self) -> int:
        return self.location.version

    @property
    def output_names(self) -> tuple[str, ...]:
        """Return the names of the graph's outputs, in graph order."""
        return tuple(o.name for o in self._session.get_outputs())

    @property
    def intra_op_spinning(self) -> bool:
        """Whether the session's idle intra-op threads spin between calls."""
        options = self._session.get_session_options()
        return options.get_session_config_entry(SPINNING_CONFIG_KEY) == "1"

    def predict(self, tensors: Tensors) -> dict[str, np.ndarray]:
        """Run the graph once and return every output by name."""
        names = self.output_names
        outputs = self._session.run(list(names), tensors)
        return dict(zip(names, outputs, strict=True))


def locate_model(
    repository: Path, name: str | None = None, version: int | None = None
) -> ModelLocation:
    """Find the version directory to serve in a model repository.

    Without a name, the repository must contain exactly one model. Without a
    version, the highest integer version directory is served.
    """
    if not repository.is_dir():
        raise ModelLoadError(
            f"model repository {repository} not found: set WATCHTIME_MODEL_REPOSITORY "
            "or --model-repository to a directory that contains <name>/<version>/"
        )

    try:
        model_directory = _model_directory(repository, name)
        versions = _versions(model_directory)
    except OSError as error:
        raise ModelLoadError(
            f"model repository {repository} cannot be read: {error}; check that "
            "the service's user can list it"
        ) from None
    chosen = max(versions) if version is None else version
    if chosen not in versions:
        raise ModelLoadError(
            f"{model_directory / str(chosen)} not found: WATCHTIME_MODEL_VERSION="
            f"{chosen} pins a version that does not exist; "
            f"available: {sorted(versions)}"
        )
    return ModelLocation(model_directory.name, chosen, model_directory / str(chosen))


def _model_directory(repository: Path, name: str | None) -> Path:
    names = sorted(
        p.name
        for p in repository.iterdir()
        if p.is_dir() and not p.name.startswith(".")
    )
    if name is not None:
        if name not in names:
            raise ModelLoadError(
                f"{repository / name} not found: WATCHTIME_MODEL_NAME={name!r} names "
                f"no model in {repository}; available: {names}"
            )
        return repository / name

    if not names:
        raise ModelLoadError(
            f"{repository} contains no model: expected {repository}/<name>/<version>/"
            f"{GRAPH_FILE} and {MANIFEST_FILE}"
        )
    if len(names) > 1:
        raise ModelLoadError(
            f"{repository} contains several models {names}: set WATCHTIME_MODEL_NAME "
            "to the one to serve"
        )
    return repository / names[0]


def _versions(model_directory: Path) -> set[int]:
    versions = {
        int(p.name)
        for p in model_directory.iterdir()
        if p.is_dir() and _VERSION_DIRECTORY.fullmatch(p.name)
    }
    if not versions:
        raise ModelLoadError(
            f"{model_directory} contains no version directory: expected "
            f"{model_directory}/<positive integer>/"
        )
    return versions


def load_model(
    location: ModelLocation, intra_op_threads: int = 1, spinning: bool = False
) -> RankingModel:
    """Open a model version, check it against its manifest and replay the goldens.

    `spinning` lets idle intra-op threads spin for the next call. It applies
    only to sessions with more than one intra-op thread.
    """
    started = time.perf_counter()
    try:
        model = _load_checked(location, intra_op_threads, spinning)
    except ModelLoadError:
        raise
    except Exception as error:
        # Any error from a candidate version's checks, onnxruntime's
        # included, rejects that version, so a bad file never stops serving.
        raise ModelLoadError(
            f"{location.directory} failed its checks: {type(error).__name__}: {error}"
        ) from error
    logger.info(
        "loaded model %s version %s from %s in %.3f s",
        model.name,
        model.version,
        location.directory,
        time.perf_counter() - started,
    )
    return model


def _load_checked(
    location: ModelLocation, intra_op_threads: int, spinning: bool
) -> RankingModel:
    manifest = read_manifest(location.manifest_path)
    spec = _parse_spec(location.manifest_path, manifest)
    _check_onnx(location.graph_path)
    session = _open_session(location.graph_path, intra_op_threads, spinning)
    _check_graph(location.graph_path, session, spec)
    _check_declared_signature(location.manifest_path, manifest, session)

    model = _build_model(location, manifest, spec, session)
    _replay_golden(location.manifest_path, model)
    _warn_about_renamed_copy(location, manifest)
    return model


def load_configured_model(settings: Settings) -> RankingModel:
    """Locate and load the model that the settings select."""
    location = locate_model(
        settings.model_repository, settings.model_name, settings.model_version
    )
    return load_model(
        location, settings.resolved_intra_op_threads(), settings.onnxruntime_spinning
    )


def _warn_about_renamed_copy(location: ModelLocation, manifest: dict[str, Any]) -> None:
    # The directory names what is served. A different name or version in the
    # manifest usually means a copied directory, which is allowed but worth a line.
    recorded = (manifest.get("name"), manifest.get("version"))
    if recorded != (location.name, location.version):
        logger.warning(
            "%s records model %s version %s, serving it as %s version %s",
            location.manifest_path,
            recorded[0],
            recorded[1],
            location.name,
            location.version,
        )


def read_manifest(path: Path) -> dict[str, Any]:
    """Read a manifest and check its format version and id hash algorithm."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{path} cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{path} is not valid JSON: {error}") from None
    except (ValueError, RecursionError) as error:
        # json raises these for integers of more than 4300 digits and for
        # nesting deeper than the interpreter's recursion limit.
        raise ModelLoadError(f"{path} cannot be parsed: {error}") from None

    if not isinstance(manifest, dict):
        raise ModelLoadError(f"{path} must contain a JSON object")
    _check_manifest_field(path, manifest, "format", MANIFEST_FORMAT)
    _check_manifest_field(path, manifest, "hash_algorithm", HASH_ALGORITHM)
    return manifest


def _check_manifest_field(
    path: Path, manifest: dict[str, Any], key: str, expected: Any
) -> None:
    if manifest.get(key) != expected:
        raise ModelLoadError(
            f"{path}: unsupported {key} {manifest.get(key)!r}, this service "
            f"reads {expected!r}; export the model again with a matching trainer"
        )


def _parse_spec(path: Path, manifest: dict[str, Any]) -> FeatureSpec:
    if "feature_spec" not in manifest:
        raise ModelLoadError(f"{path}: the key feature_spec is missing")

    try:
        return FeatureSpec.from_dict(manifest["feature_spec"])
    except KeyError as error:
        raise ModelLoadError(f"{path}: feature_spec lacks the key {error}") from None
    except (TypeError, ValueError) as error:
        raise ModelLoadError(f"{path}: invalid feature_spec: {error}") from None


def _check_onnx(path: Path) -> None:
    """Run the ONNX checker, which rejects graphs onnxruntime might still open."""
    if not path.is_file():
        raise ModelLoadError(f"{path} not found")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ModelLoadError(f"{path} fails the ONNX checker: {error}") from None
    except (OSError, ValueError, RuntimeError) as error:
        raise ModelLoadError(f"{path} cannot be read as ONNX: {error}") from None


def _open_session(
    path: Path, intra_op_threads: int, spinning: bool
) -> ort.InferenceSession:
    if not path.is_file():
        raise ModelLoadError(f"{path} not found")

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # By default onnxruntime's idle intra-op threads spin after each call for
    # the next one: 34 ms of CPU per call with 2 threads in docs/benchmarks.md.
    # With 1 thread the calling thread does all the work and no pool thread
    # exists, so nothing spins.
    spin = spinning and intra_op_threads != 1
    options.add_session_config_entry(SPINNING_CONFIG_KEY, "1" if spin else "0")
    # Every request has another candidate count, so shapes vary call to call:
    # a memory pattern planned for one shape does not fit the next, and the
    # arena keeps its largest allocation forever. Both off keep memory flat.
    options.enable_mem_pattern = False
    options.enable_cpu_mem_arena = False
    # Parallelism comes from server workers and concurrent requests, and a
    # linear model has no independent branches worth running in parallel.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except _ORT_ERRORS as error:
        raise ModelLoadError(
            f"{path} cannot be opened by onnxruntime: {error}"
        ) from None


def _check_graph(path: Path, session: ort.InferenceSession, spec: FeatureSpec) -> None:
    expected_inputs = {
        f.name: (_ONNX_TYPES[tensor_dtype(f)], 2 if f.kind == "id_list" else 1)
        for f in spec.features
    }
    expected_inputs[CANDIDATE_REQUEST_INPUT] = ("tensor(int64)", 1)
    graph_inputs = {i.name: (i.type, len(i.shape)) for i in session.get_inputs()}
    _compare_signatures(path, "input", expected_inputs, graph_inputs, exact=True)

    expected_outputs = {name: ("tensor(float)", 1) for name in OUTPUTS}
    graph_outputs = {o.name: (o.type, len(o.shape)) for o in session.get_outputs()}
    _compare_signatures(path, "output", expected_outputs, graph_outputs, exact=False)


def _check_declared_signature(
    path: Path, manifest: dict[str, Any], session: ort.InferenceSession
) -> None:
    """Check that the manifest's `inputs` and `outputs` name the graph's tensors.

    The V2 endpoints describe the model from these lists, so a manifest that
    disagrees with its graph would describe tensors the graph does not have.
    """
    graph = {
        "inputs": sorted(i.name for i in session.get_inputs()),
        "outputs": sorted(o.name for o in session.get_outputs()),
    }
    for key, graph_names in graph.items():
        declared = manifest.get(key)
        try:
            names = sorted(entry["name"] for entry in declared)
        except (TypeError, KeyError):
            raise ModelLoadError(
                f"{path}: {key} must be a list of {{name, dtype, shape}} objects"
            ) from None
        if names != graph_names:
            raise ModelLoadError(
                f"{path}: {key} declares {names}, but the graph has {graph_names}"
            )


def _compare_signatures(
    path: Path,
    role: str,
    expected: dict[str, tuple[str, int]],
    actual: dict[str, tuple[str, int]],
    *,
    exact: bool,
) -> None:
    missing = sorted(expected.keys() - actual.keys())
    if missing:
        raise ModelLoadError(
            f"{path}: the graph lacks the {role}s {missing} that the manifest declares"
        )

    extra = sorted(actual.keys() - expected.keys())
    if exact and extra:
        raise ModelLoadError(
            f"{path}: the graph has {role}s {extra} that the manifest does not declare"
        )

    for name, (element_type, rank) in expected.items():
        if actual[name] != (element_type, rank):
            raise ModelLoadError(
                f"{path}: {role} {name!r} is {actual[name][0]} of rank "
                f"{actual[name][1]}, the manifest needs {element_type} of rank {rank}"
            )


def _build_model(
    location: ModelLocation,
    manifest: dict[str, Any],
    spec: FeatureSpec,
    session: ort.InferenceSession,
) -> RankingModel:
    try:
        return RankingModel(location, manifest, spec, session)
    except ValueError as error:
        raise ModelLoadError(f"{location.manifest_path}: {error}") from None


def _replay_golden(path: Path, model: RankingModel) -> None:
    goldens = model.manifest.get("golden")
    if not isinstance(goldens, list) or not goldens:
        raise ModelLoadError(
            f"{path}: the golden list is missing or empty, so the graph cannot be "
            "checked against the outputs recorded at export"
        )

    for index, golden in enumerate(goldens):
        _replay_one_golden(path, model, index, golden)


def _replay_one_golden(
    path: Path, model: RankingModel, index: int, golden: Any
) -> None:
    where = f"{path}: golden[{index}]"
    try:
        request = parse_golden_request(golden["request"])
        batch = model.encoder.encode([request])
        expected = {name: golden["outputs"][name] for name in OUTPUTS}
    except (KeyError, TypeError) as error:
        raise ModelLoadError(f"{where} lacks the key {error}") from None
    except (ValidationError, InvalidFeature) as error:
        raise ModelLoadError(f"{where} has an invalid request: {error}") from None

    if not batch.candidate_total:
        raise ModelLoadError(f"{where} has no candidates, so it checks nothing")
    actual = model.predict(batch.tensors)
    for name in OUTPUTS:
        _compare_golden_output(where, name, actual.get(name), expected[name])
    if "linear" in model.manifest:
        _compare_linear(where, model, batch.tensors, actual[LOGIT_OUTPUT])


def parse_golden_request(document: Any) -> ParsedRequest:
    """Parse a golden request, with pydantic's error message when it is invalid."""
    parsed = parse_request_object(document)
    if parsed is None:
        RankRequest.model_validate(document)
        raise TypeError("the request does not have the /v1/rank body shape")
    return parsed


def _compare_linear(
    where: str, model: RankingModel, tensors: Tensors, graph_logit: np.ndarray
) -> None:
    """Compare the graph with exp(Wx + b) computed in numpy from the manifest."""
    try:
        numpy_logit = linear_logit(model.spec, model.manifest["linear"], tensors)
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ModelLoadError(
            f"{where}: the linear parameters cannot be evaluated: {error!r}"
        ) from None

    relative = np.abs(np.exp(graph_logit.astype(np.float64) - numpy_logit) - 1.0)
    if relative.max() > GOLDEN_RTOL:
        raise ModelLoadError(
            f"{where}: the graph's exp(logit) differs from exp(Wx + b) computed "
            f"from the manifest's linear parameters by {relative.max():.3g} "
            f"relative, more than {GOLDEN_RTOL:g}"
        )


def _compare_golden_output(
    where: str, name: str, actual: np.ndarray | None, expected_values: Any
) -> None:
    try:
        expected = np.asarray(expected_values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelLoadError(f"{where}: {name} is not a list of numbers") from None

    actual = np.zeros(0) if actual is None else actual.astype(np.float64)
    if actual.shape != expected.shape:
        raise ModelLoadError(
            f"{where}: {name} has shape {actual.shape}, the manifest records "
            f"{expected.shape}"
        )

    if not np.allclose(actual, expected, rtol=GOLDEN_RTOL, atol=GOLDEN_ATOL):
        relative = np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-12)
        raise ModelLoadError(
            f"{where}: {name} differs from the recorded outputs, max relative "
            f"error {relative.max():.3g} exceeds {GOLDEN_RTOL:g}; the graph, "
            "the manifest or the request encoding has changed since export"
        )
