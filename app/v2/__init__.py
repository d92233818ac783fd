"""The Open Inference Protocol (KServe V2) data plane, without HTTP.

`InferenceDataPlane` serves server and model metadata, readiness and
inference on the model's raw input tensors; `app.routes.v2` maps it to the
protocol's REST paths.
"""

from app.v2.codec import BINARY_DATA_EXTENSION, HEADER_LENGTH_HEADER, EncodedResponse
from app.v2.dataplane import InferenceDataPlane
from app.v2.errors import InvalidInferenceRequest, ModelNotFound

__all__ = [
    "BINARY_DATA_EXTENSION",
    "HEADER_LENGTH_HEADER",
    "EncodedResponse",
    "InferenceDataPlane",
    "InvalidInferenceRequest",
    "ModelNotFound",
]
