# syntax=docker/dockerfile:1
# Two images from one file, both running the commands `make run` runs natively:
#   app (the default target): every Python role; the role is the command (python -m services.<role>)
#   gateway (--target gateway): nginx, configured by `python -m gateway`
# Both run as an unprivileged user on a read-only root filesystem: nothing is written under /app
# at run time (bytecode is compiled here); /tmp is the one writable directory (heartbeats, the
# gateway's rendered configuration and temp files): mount a tmpfs or an emptyDir there.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# uv from its official image, pinned to the version the Makefile uses.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
COPY shared ./shared
COPY services ./services
COPY gateway ./gateway
RUN python -m compileall -q shared services gateway

FROM ${PYTHON_IMAGE} AS gateway
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent app
COPY --from=build /app/gateway /app/gateway
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_PORT=8080 \
    RUN_DIR=/tmp/gateway \
    STOREFRONT_ROOT=/app/gateway/storefront
USER 10001:10001
EXPOSE 8080
# nginx finishes the requests it has on QUIT (TERM drops them).
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-m", "gateway", "healthcheck"]
CMD ["python", "-m", "gateway"]

FROM ${PYTHON_IMAGE} AS app
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    HEALTH_DIR=/tmp/payments-health \
    HEARTBEAT_FILE=/tmp/approval-heartbeat
USER 10001:10001
# SIGTERM drains (shared/runner.py): give it SHUTDOWN_GRACE_SECONDS plus a few seconds.
STOPSIGNAL SIGTERM
# HTTP roles (HEALTH_PORT set) answer /readyz; the worker's heartbeat says whether it is ready.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "shared.healthcheck", "ready"]
# docker-compose.yml and deploy/k8s set the command per role: python -m services.<role>
CMD ["python", "-m", "services.order"]
