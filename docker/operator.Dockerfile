# syntax=docker/dockerfile:1.7
# tokenfleet operator: kopf + kubernetes client, no torch. Build from the repository root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/tokenfleet/operator:0.1.0 .
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tokenfleet
COPY . /src
RUN /opt/tokenfleet/bin/pip install "/src[operator]"

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="tokenfleet-operator" \
      org.opencontainers.image.source="https://github.com/tokenfleet/tokenfleet" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/tokenfleet /opt/tokenfleet
ENV PATH=/opt/tokenfleet/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# A numeric non-root user, so runAsNonRoot can verify it without an /etc/passwd lookup.
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["tokenfleet-operator"]
