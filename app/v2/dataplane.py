"""The Open Inference Protocol data plane: metadata, readiness and inference.

It uses no HTTP types. Each call takes the model that the caller read
once for its request, so a hot reload between two steps of one call cannot
mix versions, and the response names the version that computed it.
"""

from __future__ import annotations

import logging
from typing import Any

from app.model import RankingModel
from app.v2.codec import (
    BINARY_DATA_EXTENSION,
    EncodedResponse,
    InferenceRequest,
    decode_request,
    encode_response,
)
from app.v2.errors import InvalidInferenceRequest, ModelNotFound
from app.v2.signature import PLATFORM, ModelSignature
from app.v2.tensors import build_tensors

SERVER_NAME = "watchtime-ranker"

logger = logging.getLogger(__name__)


class InferenceDataPlane:
    """Serves the protocol's metadata, readiness and inference calls."""

    def __init__(self, server_version: str, max_rows: int) -> None:
        self.server_version = server_version
        # Bounds both the candidates and the requests of one inference.
        self.max_rows = max_rows

    def server_metadata(self) -> dict[str, Any]:
        """Return the server's name, version and protocol extensions."""
        return {
            "name": SERVER_NAME,
            "version": self.server_version,
            "extensions": [BINARY_DATA_EXTENSION],
        }

    def model_ready(
        self, model: RankingModel, name: str, version: str | None
    ) -> dict[str, Any]:
        """Return the readiness of the model the path names."""
        check_model_path(model, name, version)
        return {"name": model.name, "ready": True}

    def model_metadata(
        self, model: RankingModel, name: str, version: str | None
    ) -> dict[str, Any]:
        """Return the name, versions, platform and tensors of the model."""
        check_model_path(model, name, version)
        signature = ModelSignature.from_model(model)
        return {
            "name": model.name,
            "versions": [str(model.version)],
            "platform": PLATFORM,
            "inputs": [spec.metadata() for spec in signature.inputs],
            "outputs": [spec.metadata() for spec in signature.outputs],
        }

    def infer(
        self,
        model: RankingModel,
        name: str,
        version: str | None,
        body: bytes,
        header_length: str | None,
    ) -> EncodedResponse:
        """Run one inference on a request body and encode the response.

        `header_length` is the value of the Inference-Header-Content-Length
        header, or None when the body is only JSON. Raises ModelNotFound for
        another model or version, and InvalidInferenceRequest for a request
        that does not fit the model.
        """
        check_model_path(model, name, version)
        request = decode_request(body, header_length)
        signature = ModelSignature.from_model(model)
        selected = _select_outputs(signature, request)
        tensors = build_tensors(signature, request.inputs, self.max_rows)

        results = model.predict(tensors)
        logger.debug(
            "inferred %s outputs for %s tensors with model %s version %s",
            len(selected),
            len(tensors),
            model.name,
            model.version,
        )
        outputs = [(output, results[output], binary) for output, binary in selected]
        return encode_response(model.name, str(model.version), request.id, outputs)


def check_model_path(model: RankingModel, name: str, version: str | None) -> None:
    """Raise ModelNotFound unless the name and version are the served model's."""
    if name != model.name:
        raise ModelNotFound(
            f'model "{name}" not found: this server serves the model '
            f'"{model.name}", so send /v2/models/{model.name}/...'
        )
    if version is not None and version != str(model.version):
        raise ModelNotFound(
            f'version "{version}" of model "{name}" not found: the served version '
            f"is {model.version}, so send /v2/models/{name}/versions/"
            f"{model.version}/... or leave out the version"
        )


def _select_outputs(
    signature: ModelSignature, request: InferenceRequest
) -> list[tuple[str, bool]]:
    """Return the name of each output to send and whether it goes as bytes."""
    names = [spec.name for spec in signature.outputs]
    if request.outputs is None:
        return [(name, request.binary_output) for name in names]

    for output in request.outputs:
        if output.name not in names:
            quoted = ", ".join(f'"{name}"' for name in names)
            raise InvalidInferenceRequest(
                f'the model has no output "{output.name}": request some of '
                f'{quoted}, or leave out "outputs" to receive all of them'
            )
    return [(output.name, output.binary) for output in request.outputs]
