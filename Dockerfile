# syntax=docker/dockerfile:1

# Base of both stages, pinned by tag and by the digest of its multi-platform
# index, so that a rebuild starts from the same files. The requirements in
# requirements/ were resolved for CPython 3.11: change the tag and the
# digest together, and regenerate the requirements if the minor version moves.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src

# The pinned dependencies get a layer of their own before any source is
# copied, so that a change to the code reuses it. The build tools live in a
# virtual environment of their own and install into /opt/venv with --python,
# so that /opt/venv, the only part that reaches the final image, holds no pip,
# setuptools or wheel.
COPY requirements/ requirements/
RUN python -m venv /opt/build-tools \
    && /opt/build-tools/bin/pip install --no-cache-dir \
        --requirement requirements/build.txt \
    && python -m venv --without-pip /opt/venv \
    && /opt/build-tools/bin/pip --python /opt/venv/bin/python install \
        --no-cache-dir --requirement requirements/runtime.txt

COPY pyproject.toml README.md ./
COPY app/ app/
COPY trainer/ trainer/
RUN /opt/build-tools/bin/pip wheel --no-cache-dir --no-build-isolation --no-deps \
        --wheel-dir /tmp/wheels . \
    && /opt/build-tools/bin/pip --python /opt/venv/bin/python install \
        --no-cache-dir --no-deps /tmp/wheels/watchtime_ranker-*.whl

FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="watchtime-ranker" \
      org.opencontainers.image.description="Ranks candidate videos by expected watch time" \
      org.opencontainers.image.licenses="Apache-2.0"

# A numeric UID, so that Kubernetes can check runAsNonRoot against the image.
RUN groupadd --system --gid 10001 watchtime \
    && useradd --system --uid 10001 --gid watchtime --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin watchtime

COPY --from=build /opt/venv /opt/venv
# The bundled model stays owned by root: the service only reads it.
COPY models/ /models/

# WATCHTIME_INTRA_OP_THREADS is left unset, so that the service's default
# applies: a thread count fixed here could not follow the container's CPU
# limit, which is only known where the container runs.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WATCHTIME_HOST=0.0.0.0 \
    WATCHTIME_PORT=8000 \
    WATCHTIME_WORKERS=1 \
    WATCHTIME_MODEL_REPOSITORY=/models

USER 10001:10001
EXPOSE 8000

# Slim images have no curl, so the check uses the standard library. It reads
# the port from the environment, so that a changed WATCHTIME_PORT still works.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('WATCHTIME_PORT', '8000') + '/healthz', timeout=2)"]

# Exec form, so that the server is PID 1 and receives SIGTERM directly.
CMD ["watchtime", "serve"]
