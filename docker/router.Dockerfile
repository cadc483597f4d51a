# syntax=docker/dockerfile:1.7
# tokenfleet router: FastAPI + httpx + kubernetes client, no torch. Build from the repository root:
#   docker build -f docker/router.Dockerfile -t ghcr.io/tokenfleet/router:0.1.0 .
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tokenfleet
COPY . /src
RUN /opt/tokenfleet/bin/pip install "/src[router]"

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="tokenfleet-router" \
      org.opencontainers.image.source="https://github.com/tokenfleet/tokenfleet" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/tokenfleet /opt/tokenfleet
ENV PATH=/opt/tokenfleet/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["tokenfleet-router"]
