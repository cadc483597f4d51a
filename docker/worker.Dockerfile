# syntax=docker/dockerfile:1.7
# tokenfleet worker: the PyTorch decode engine. PyPI's Linux x86_64 torch wheels are CUDA builds that
# carry their own CUDA runtime libraries, so a slim Python base is enough: the node only needs the
# NVIDIA driver (exposed by the device plugin). Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t ghcr.io/tokenfleet/worker:0.1.0 .
# CPU-only image (much smaller, for `--backend sim` or CPU tests):
#   docker build -f docker/worker.Dockerfile --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu ...
FROM python:3.11-slim-bookworm AS build
ARG TORCH_INDEX=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tokenfleet
RUN if [ -n "$TORCH_INDEX" ]; then /opt/tokenfleet/bin/pip install --index-url "$TORCH_INDEX" torch==2.13.0; fi
COPY . /src
RUN /opt/tokenfleet/bin/pip install "/src[worker]"
# The CPU decode kernels (cpu_kernels.py) are compiled here, so the runtime image needs no compiler.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null \
    && TOKENFLEET_KERNEL_CACHE=/opt/tokenfleet/kernels /opt/tokenfleet/bin/python -m tokenfleet_worker.cpu_kernels

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="tokenfleet-worker" \
      org.opencontainers.image.source="https://github.com/tokenfleet/tokenfleet" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/tokenfleet /opt/tokenfleet
# Model weights come from a mounted volume; caches go to an emptyDir so the root filesystem can
# stay read-only.
ENV PATH=/opt/tokenfleet/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/tmp/hf TRITON_CACHE_DIR=/tmp/triton TOKENFLEET_KERNEL_CACHE=/opt/tokenfleet/kernels \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 65532:65532
EXPOSE 8000
ENTRYPOINT ["tokenfleet-worker"]
