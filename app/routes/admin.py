"""`POST /v1/admin/reload`: serve the newest valid model version now.

The endpoint is off unless WATCHTIME_ADMIN_TOKEN is set, and then requires
`Authorization: Bearer <token>`, compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Request

from app.errors import AdminDisabled, ModelRejected, Unauthorized
from app.model_manager import ModelManager
from app.routes.dependencies import get_model_manager
from app.schemas import ErrorResponse, ReloadResponse
from app.settings import Settings

router = APIRouter(tags=["admin"])

logger = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
    404: {"model": ErrorResponse, "description": "Admin endpoints are off."},
    422: {"model": ErrorResponse, "description": "The new version failed its checks."},
}


def require_admin(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Raise unless the request carries the configured admin token."""
    settings: Settings = request.app.state.settings
    if settings.admin_token is None:
        raise AdminDisabled(
            "admin endpoints are off; set WATCHTIME_ADMIN_TOKEN to turn them on"
        )

    scheme, _, given = (authorization or "").partition(" ")
    expected = settings.admin_token.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.encode("utf-8"), expected.encode("utf-8")
    ):
        logger.warning("admin request rejected: missing or wrong bearer token")
        raise Unauthorized(
            "send the admin token as the header Authorization: Bearer <token>"
        )


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(require_admin)],
)
async def reload_model(
    manager: Annotated[ModelManager, Depends(get_model_manager)],
) -> ReloadResponse:
    """Check the repository and serve its selected version if it is valid.

    Every worker of the server follows within a second. A version that fails
    its checks is rejected and the current model keeps serving.
    """
    outcome = await anyio.to_thread.run_sync(manager.request_reload_everywhere)
    if outcome.result == "rejected":
        raise ModelRejected(
            f"model {outcome.name} version {outcome.version} was rejected and the "
            f"current model keeps serving: {outcome.reason}"
        )

    current = manager.current
    return ReloadResponse(
        result=outcome.result,
        name=current.name if current else None,
        version=current.version if current else None,
    )
