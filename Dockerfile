# One image for every Python role (order, checkout, approval, sandbox); the role is the command.
FROM python:3.11-slim AS base

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.9 && useradd --create-home --uid 10001 app
WORKDIR /app

COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

COPY shared ./shared
COPY services ./services

USER app
ENV HOST=0.0.0.0
# docker-compose.yml sets the command per role: python -m services.<role>
CMD ["python", "-m", "services.order"]
