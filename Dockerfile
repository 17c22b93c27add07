# syntax=docker/dockerfile:1
#
# kvbox container images: one Dockerfile, two targets (docs/deploy.md).
#
#   docker build --target server -t kvbox-server:dev .   # `kvbox serve` (also the default target)
#   docker build --target client -t kvbox-client:dev .   # `kvbox loadgen` / `client` / `bench`
#
# Stages: `builder` turns the source tree into wheels (kvbox and its dependencies);
# `runtime` installs them into a clean slim Python with no compiler and no source tree;
# `client` and `server` add only their defaults. tests/deploy/test_dockerfile.py checks
# ENTRYPOINT, CMD, HEALTHCHECK, EXPOSE, USER and VOLUME against `kvbox`'s own argument parser.
#
# PID 1: there is no tini or dumb-init. The kernel gives PID 1 no default signal actions, so
# a process there must install its own handlers and reap any children it forks. `kvbox serve`
# and `kvbox loadgen` handle SIGTERM and SIGINT themselves (graceful shutdown within
# --shutdown-grace) and fork no children, so an init would only forward one signal;
# tests/e2e/test_deploy_native.py checks both exit promptly on SIGTERM. `docker run --init`
# still works if that ever changes.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# One wheel for kvbox plus one per dependency (uvloop ships manylinux wheels, so no compiler).
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=unknown
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="kvbox" \
      org.opencontainers.image.description="A versioned key-value and object store: GW-KV protocol, S3 API, embedded or clustered." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# PYTHONUNBUFFERED: logs go to stdout line by line, as `docker logs` and kubectl expect.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER, and the
# manifests' runAsUser/fsGroup name the same 10001.
RUN groupadd --system --gid 10001 kvbox \
 && useradd --system --uid 10001 --gid kvbox --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kvbox
# The wheels are bind-mounted from the builder, so they never become a layer of this image.
# --no-index: only the wheels built above, nothing fetched at install time.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/kvbox-*.whl

FROM runtime AS client
USER 10001:10001
WORKDIR /tmp
# The load generator against a server reachable as `kvbox` (the Compose/Swarm service name
# and the Kubernetes Service name). Override the command for `client`/`bench`, e.g.
#   docker run --rm --network kvbox_default kvbox-client:dev client kvbox:7070 GET apple
HEALTHCHECK NONE
ENTRYPOINT ["kvbox"]
CMD ["loadgen", "--server", "kvbox:7070"]

# Last stage, so a plain `docker build .` builds the server.
FROM runtime AS server
# Container logs are kept and shipped: a generated root secret key stays in /data only
# (`docker exec <container> sed -n 2p /data/root-credentials`), never in the log.
# (DL3064 reads "SECRET" in the name as a secret value; this is a switch that hides one.)
# hadolint ignore=DL3064
ENV KVBOX_SHOW_ROOT_SECRET=false
# /data is created owned by the kvbox user before VOLUME: a new named volume copies this
# ownership, so the non-root server can write to it without a chown at start.
RUN install --directory --owner=10001 --group=10001 --mode=0750 /data
VOLUME ["/data"]
# 7070: GW-KV over TCP and UDP. 9000: HTTP (/healthz, /readyz, /metrics, later the S3 API).
EXPOSE 7070/tcp 7070/udp 9000/tcp
USER 10001:10001
WORKDIR /data
# `kvbox health` sends GW-KV PING to 127.0.0.1:7070 and exits 0 on OK PONG.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 CMD ["kvbox", "health"]
ENTRYPOINT ["kvbox"]
# --host 0.0.0.0: the default 127.0.0.1 is unreachable from outside the container.
CMD ["serve", "--host", "0.0.0.0", "--data", "/data"]
