"""Errors of the Open Inference Protocol endpoints.

They subclass `ServiceError`, so they carry their HTTP status like every other
error of the service. The `/v2` routes send only their message, because the
protocol's error body is `{"error": "<message>"}`.
"""

from __future__ import annotations

from app.errors import ServiceError


class InvalidInferenceRequest(ServiceError):
    """An inference request is malformed or its tensors do not fit the model."""

    status_code = 400
    error_type = "invalid_inference_request"


class ModelNotFound(ServiceError):
    """A path names a model or a model version that this server does not serve."""

    status_code = 404
    error_type = "model_not_found"
