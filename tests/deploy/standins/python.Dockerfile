# Stand-in for the official python image (Dockerfile's PYTHON_IMAGE) where no image
# registry is reachable: Debian's own Python 3.11 on the debootstrapped base, with the
# commands where the official image has them (python, pip on PATH, no EXTERNALLY-MANAGED).
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/* /usr/lib/python3.11/EXTERNALLY-MANAGED \
 && ln -s /usr/bin/python3 /usr/local/bin/python \
 && ln -s /usr/bin/pip3 /usr/local/bin/pip
CMD ["python3"]
