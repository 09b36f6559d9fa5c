# syntax=docker/dockerfile:1
# anyllm-sidecar image: the one that k8s/ names.
#
# Image: anyllm-sidecar:0.1.0
#   docker build -t anyllm-sidecar:0.1.0 .
#   (push it as REGISTRY/anyllm-sidecar:0.1.0 and point k8s/ at it, see k8s/README.md)
#
# Run locally (the sidecar listens on 127.0.0.1 unless its config or flags say otherwise, so
# publishing ports needs --http/--grpc on 0.0.0.0; with no config it answers from a demo backend):
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:50051:50051 anyllm-sidecar:0.1.0 \
#     --http 0.0.0.0:8080 --grpc 0.0.0.0:50051
#
# Two stages: the builder (full python image, compilers available in case a dependency has no
# wheel) installs the package into /opt/venv; the final stage is python:3.11-slim plus that venv
# only: no pip cache, no compilers, no source tree. Runs as UID/GID 10001 on a read-only root
# filesystem. No HEALTHCHECK: Kubernetes probes /healthz, /readyz (HTTP 8080) and
# grpc.health.v1.Health (gRPC 50051) instead.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
# Installs the package and its dependencies as wheels, then byte-compiles everything once, here:
# the runtime root filesystem is read-only, so nothing can be compiled there.
RUN /opt/venv/bin/pip install . \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="anyllm-sidecar" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="LLM sidecar: Anthropic Messages API over gRPC and HTTP, with fallback" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
# HTTP: Anthropic Messages API, /healthz, /readyz, /metrics. gRPC: anyllm.sidecar.v1.MessagesService,
# grpc.health.v1.Health, reflection. The addresses themselves come from the config (server.http,
# server.grpc) or --http/--grpc; the default is 127.0.0.1 on these ports.
EXPOSE 8080 50051
ENTRYPOINT ["anyllm-sidecar"]
