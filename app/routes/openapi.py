"""OpenAPI document with a `/v1/rank` example built from the loaded model."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.contract import FeatureSpec
from app.schemas import RankRequest

RANK_PATH = "/v1/rank"


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """Return the OpenAPI document, with the model's example once it is loaded.

    Before the model is loaded the document keeps the schema's static example
    and is not cached. The cache is rebuilt when a reload changes the model.
    """
    model = app.state.model_manager.current
    served = (model.name, model.version) if model else None
    if app.openapi_schema and app.state.openapi_model == served:
        return app.openapi_schema

    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    _add_request_schema(document)
    if model is None:
        return document

    body = document["paths"][RANK_PATH]["post"]["requestBody"]
    body["content"]["application/json"]["examples"] = {
        "model": {
            "summary": f"Features of {model.name} version {model.version}",
            "value": example_rank_request(model.spec),
        }
    }
    app.openapi_schema = document
    app.state.openapi_model = served
    return document


def _add_request_schema(document: dict[str, Any]) -> None:
    # The route reads raw bytes, so FastAPI does not collect the body model.
    schema = RankRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(schema.pop("$defs", {}))
    schemas["RankRequest"] = schema


def example_rank_request(spec: FeatureSpec) -> dict[str, Any]:
    """Build a `/v1/rank` body from the example values of a feature spec.

    The first candidate sends every candidate feature, and the second sends
    none, so it shows the defaults and the id taken as a feature value.
    """
    candidate_features = {
        f.name: f.example for f in spec.of_source("candidate") if not f.value_from_id
    }
    first_id, second_id = _example_ids(spec)
    return {
        "request_id": "example-request-1",
        "context": {f.name: f.example for f in spec.of_source("context")},
        "candidates": [
            {"id": first_id, "features": candidate_features},
            {"id": second_id, "features": {}},
        ],
        "top_k": 2,
    }


def _example_ids(spec: FeatureSpec) -> tuple[str | int, str | int]:
    from_id = [f for f in spec.of_source("candidate") if f.value_from_id]
    example = from_id[0].example if from_id else None
    if isinstance(example, int) and not isinstance(example, bool):
        return example, example + 1
    if isinstance(example, str) and example:
        return example, f"{example}-2"
    return "v1", "v2"
