"""The service's application with one more route, which fails with a request value.

No route of the service is meant to fail, so this one plays the part of a bug:
it raises an exception whose message and cause quote the request body, as a
KeyError or a pydantic error can. Run it as `python failing_app.py PORT` with
the usual `WATCHTIME_*` variables; it logs JSON records at DEBUG.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request

from app.logging import logging_config
from app.main import create_app_from_env

FAILING_PATH = "/test/fail"


async def fail_with_the_body(request: Request) -> None:
    """Raise an error whose message and cause contain the request body."""
    body = (await request.body()).decode("utf-8")
    try:
        raise KeyError(body)
    except KeyError as error:
        raise RuntimeError(f"could not rank {body}") from error


def create_failing_app() -> FastAPI:
    """Build the service's application and add the failing route."""
    app = create_app_from_env()
    app.add_api_route(FAILING_PATH, fail_with_the_body, methods=["POST"])
    return app


if __name__ == "__main__":
    uvicorn.run(
        "failing_app:create_failing_app",
        factory=True,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=logging_config("debug", "json"),
    )
