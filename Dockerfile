# syntax=docker/dockerfile:1
# One image for both processes of activity-service:
#   docker run IMAGE                 -> activity-service api --host 0.0.0.0 (the default command)
#   docker run IMAGE consumer        -> activity-service consumer
# Configuration comes from the environment, with the variable names of .env.example.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a virtual environment with the runtime dependencies and the package, nothing else ---------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build

# Dependencies first, exactly as locked: requirements/runtime.lock pins pyproject.toml's [project]
# dependencies (no dev extras) and everything they need, each with its files' hashes (make lock), so this
# layer is rebuilt only when the lock changes and installs what the tests ran with. All of them install
# from manylinux wheels (checked on x86_64), so no compiler is needed even here.
COPY requirements/runtime.lock ./
RUN pip install --require-hashes --requirement runtime.lock

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps . \
    && python -m compileall -q /opt/venv/lib \
    && pip uninstall --yes pip setuptools

# --- runtime: the interpreter, the virtual environment and an unprivileged user ----------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="activity-service" \
      org.opencontainers.image.description="User-activity ingest: HTTP API -> Kafka -> MongoDB consumer"

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it and runAsUser can name it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /opt/healthcheck.py

# API_HOST: inside a container the API must listen on every interface, not on loopback.
# PYTHONDONTWRITEBYTECODE: the bytecode was compiled at build time; the root filesystem may be read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000

# An empty working directory: the settings also read ./.env, and none must be baked into the image.
WORKDIR /app
USER 10001:10001

EXPOSE 8000 9100

# With the standard library (a slim image has no curl): GET /health of the API, or the consumer's
# metrics endpoint; the script tells which process this container runs from PID 1's command line.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/healthcheck.py"]

# Exec form: the process is PID 1 and receives SIGTERM itself. Both commands handle it (uvicorn drains
# requests; the consumer commits the batch in hand and leaves its group).
ENTRYPOINT ["activity-service"]
CMD ["api", "--host", "0.0.0.0"]
