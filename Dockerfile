# syntax=docker/dockerfile:1
# One image for every role of nango-orchestrator:
#   nango server   API + dashboard (port 3003)
#   nango worker   Temporal worker; runs scripts in a bubblewrap sandbox (health on 8081)
#   nango migrate  SQL migrations + Temporal search attributes (idempotent, exits)
# Build: docker build -t REGISTRY/nango-orchestrator:0.1.0 .
# Run:   docker run --rm -e DATABASE_URL=... REGISTRY/nango-orchestrator:0.1.0 worker

# Pinned to an exact Python release on an exact Debian release, so a rebuild gets the same base
# (bump it deliberately). For a reproducible build pin the digest too:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm` prints it.)
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: the project's wheel and the wheels of its dependencies ---------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Sources only (see .dockerignore); README.md is optional for the build.
COPY pyproject.toml README.md* ./
COPY orchestrator ./orchestrator
COPY workflows ./workflows
COPY activities ./activities
# Every dependency ships manylinux wheels for CPython 3.11, so no compiler is needed here.
# the `tracing` extra (OpenTelemetry's SDK and OTLP exporter) goes in too: OTEL_EXPORTER_OTLP_ENDPOINT (the
# chart's tracing.otlpEndpoint) turns tracing on, and a process asked to trace without the SDK refuses to start
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && whl=$(ls /wheels/nango_orchestrator-*.whl) \
 && python -m pip wheel --wheel-dir /wheels "${whl}[tracing]"

# --- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="nango-orchestrator" \
      org.opencontainers.image.description="Self-hosted platform for Nango-style integration scripts on Temporal"

# bubblewrap: the sandbox of script runs (unprivileged user namespaces; not setuid in Debian).
# libseccomp2: the runner's seccomp filter for the sandboxed child.
# tini: PID 1, so processes orphaned by a killed sandbox are reaped instead of piling up as zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap libseccomp2 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid so Kubernetes can check runAsNonRoot and the Helm chart can use runAsUser 10001.
RUN groupadd --system --gid 10001 nango \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/nango --create-home \
      --shell /usr/sbin/nologin nango \
 && mkdir -p /var/cache/nango/bundles \
 && chown -R 10001:10001 /var/cache/nango

# Installed from the wheels only: what runs is exactly what was built, no network at this step.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/wheels 'nango-orchestrator[tracing]' \
 && nango --help > /dev/null

# The root filesystem may be read-only (the Helm chart mounts emptyDirs at /tmp and the bundle
# cache): nothing writes bytecode, and caches go to /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/nango \
    XDG_CACHE_HOME=/tmp/.cache \
    BUNDLE_CACHE_DIR=/var/cache/nango/bundles \
    API_HOST=0.0.0.0
WORKDIR /home/nango
USER 10001:10001
EXPOSE 3003 8081

# tini forwards SIGTERM to nango only (no -g): the worker drains, its running scripts are not
# signalled directly, and tini reaps whatever is orphaned.
ENTRYPOINT ["/usr/bin/tini", "--", "nango"]
CMD ["server"]
