# mnist-serve: the inference service alone (no training code, torchvision, matplotlib or tests).
#
#   docker build -t mnist-serve .                       # CPU torch from PyTorch's CPU wheel index
#   docker build --build-arg TORCH_VERSION=2.14.1+cu126 \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 -t mnist-serve:cuda .
#   docker build --network none --build-arg BASE=local/py311-bookworm:base ...   # offline, from
#       wheels in docker/wheels/ and a locally made base image (see scripts/docker-smoke.sh)
#
# Every package but torch comes from docker/requirements.txt, made from uv.lock with hashes (make
# lock). TORCH_VERSION is the lock's torch version (tests/test_lock.py checks it) with the build's
# label: +cpu, +cu126, or none for PyPI's own build.

# checkov:skip=CKV_DOCKER_7: FROM ${BASE} is this version tag or the base you pass; checkov cannot resolve ARG
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS dependencies
ARG TORCH_VERSION=2.14.1+cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY docker/requirements.txt /tmp/build/requirements.txt
COPY docker/wheels/ /tmp/build/wheels/
# Wheels shipped in the build context win; without them, PyPI for the locked set and PyTorch's
# own index for torch. The locked set goes first, checked against its hashes; torch then finds
# its own dependencies installed.
RUN python3 -m venv /opt/venv \
    && if ls /tmp/build/wheels/*.whl >/dev/null 2>&1; then \
         /opt/venv/bin/pip install --no-index --find-links /tmp/build/wheels --require-hashes -r /tmp/build/requirements.txt \
         && /opt/venv/bin/pip install --no-index --find-links /tmp/build/wheels "torch==${TORCH_VERSION}"; \
       else \
         /opt/venv/bin/pip install --require-hashes -r /tmp/build/requirements.txt \
         && /opt/venv/bin/pip install --extra-index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"; \
       fi \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

FROM ${BASE}
RUN groupadd --system --gid 10001 mnist \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent mnist
COPY --from=dependencies /opt/venv /opt/venv
WORKDIR /srv
COPY mnist_core/ mnist_core/
COPY app/ app/
COPY models/ models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    GRPC_PORT=8001 \
    WORKERS=1 \
    MODEL_REPOSITORY=/srv/models
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
# Exec form: python is PID 1, so SIGTERM reaches uvicorn and the lifespan shuts down cleanly.
CMD ["python", "-m", "app"]
