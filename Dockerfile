# Kairos API image.
#
#   docker build -t kairos .
#   docker run -p 8000:8000 -v kairos-data:/data -e KAIROS_API_KEYS="$KAIROS_API_KEYS" kairos
#
# The API serves in production: it refuses to start without KAIROS_API_KEYS (hashed keys; make one with
# `python -m serving.keys new --name NAME --scope SCOPE`) or with the public demo key.
#
# /data is the data home (ingested tables, feature snapshots) and also holds the embedded MLflow
# store (mlflow.db + mlartifacts/). Run the jobs in this same image against /data, so that the
# artifact paths MLflow records (file:///data/mlartifacts/...) resolve when the API loads the model:
#
#   docker run -v kairos-data:/data -v "$PWD/export:/export:ro" kairos \
#       kairos ingest --input /export --mapping /export/mapping.yaml --out /data
#   docker run -v kairos-data:/data kairos kairos features build --data /data
#   docker run -v kairos-data:/data kairos kairos train churn --data /data --tracking-uri sqlite:////data/mlflow.db
#
# The data home and the registry come from KAIROS_DATA_HOME and KAIROS_TRACKING_URI (defaults below);
# to use an MLflow server:
#
#   docker run -e KAIROS_TRACKING_URI=http://mlflow:5000 -p 8000:8000 -v kairos-data:/data kairos
#
# The image also runs that MLflow server (docker-compose.yml: PostgreSQL store, artifacts under
# /mlflow/artifacts, a directory the kairos user owns so that a fresh named volume is writable).
#
# A bind-mounted /data must be writable by uid 10001 (the sqlite store is written on start-up).
#
# The base is Debian's own bookworm-slim with Debian's Python 3.11 (not the python:3.11-slim image): a
# base that can be rebuilt from Debian's archive alone, which is how `make image-test` proves this file
# on machines without the public container registry (it bootstraps debian:bookworm-slim with
# debootstrap, then builds this file unchanged). Python and the OpenMP runtime come from Debian and get
# Debian's security updates with `apt-get upgrade` on rebuild.

ARG BASE_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------------
# builder: a venv with Kairos and its runtime dependencies (no dev extras), pinned by constraints.txt
FROM ${BASE_IMAGE} AS builder

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Debian's Python 3.11 with venv; a compiler only for pinned packages without a wheel for the build
# platform (e.g. on arm64). The compiler stays in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv
# A machine behind a TLS-inspecting proxy passes its CA bundle as the build secret pip_cert
# (image/build.sh does when PIP_CERT or SSL_CERT_FILE is set); it is used by pip only, never stored.
RUN --mount=type=secret,id=pip_cert,required=false \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && pip install --quiet --upgrade pip

WORKDIR /src

# Dependencies first, in their own layer: a code change does not reinstall them.
COPY pyproject.toml constraints.txt README.md ./
RUN --mount=type=secret,id=pip_cert,required=false \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && pip install -c constraints.txt -r /tmp/requirements.txt

# Then the package itself (a regular install, not editable: the source tree is not copied on).
COPY features ./features
COPY models ./models
COPY bundles ./bundles
COPY training ./training
COPY batch ./batch
COPY serving ./serving
COPY cli ./cli
COPY synth ./synth
COPY ops ./ops
RUN --mount=type=secret,id=pip_cert,required=false \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && pip install -c constraints.txt . \
    && kairos --help > /dev/null \
    && find /opt/venv -depth -type d -name tests -exec rm -rf {} +

# The third-party test suites (pandas, numpy, scipy, pyarrow, ibis, ...: about 150 MB) are removed above:
# nothing imports them at run time, and `make image-test` runs every job and the API in the image to prove it.

# ---------------------------------------------------------------------------------------------------
# runtime: the venv on the slim base (Debian's Python, no compiler, no pip cache), run as a non-root user
FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="kairos" \
      org.opencontainers.image.description="Open CRM-marketing intelligence: scores, recommendations and decisions behind an API." \
      org.opencontainers.image.licenses="Apache-2.0"

# The interpreter the venv was made with (the same Debian package as in the builder), and the OpenMP
# runtime that LightGBM (and implicit) load at import time.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Fixed numeric ids so that volume ownership is predictable and `runAsNonRoot` can verify the user.
RUN groupadd --system --gid 10001 kairos \
    && useradd --system --uid 10001 --gid kairos --create-home --home-dir /home/kairos \
        --shell /usr/sbin/nologin kairos \
    && mkdir -p /data /home/kairos/model-cache /mlflow/artifacts \
    && chown kairos:kairos /data /home/kairos/model-cache /mlflow/artifacts

COPY --from=builder /opt/venv /opt/venv

# KAIROS_* are the service settings (serving/settings.py). The model cache is a local copy of verified
# model files, re-fetched from the registry when missing, so it lives in the container, not in /data.
# MLflow 3 sends usage telemetry by default; a service that holds customer data does not phone home.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    KAIROS_DATA_HOME=/data \
    KAIROS_TRACKING_URI=sqlite:////data/mlflow.db \
    KAIROS_MODEL_CACHE_DIR=/home/kairos/model-cache

# Fail the build, not the first request, if a shared library is missing on this base.
RUN python -c "import lightgbm, serving.app"

WORKDIR /home/kairos
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

# Liveness only: the process answers. Readiness (/health/ready) is 503 until a model is loaded, which is
# a routing decision for the orchestrator, not a reason to restart the container. No curl in slim images.
# The port is fixed here: if you serve on another port, override the health check too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4).status == 200 else 1)"]

CMD ["kairos", "serve", "--host", "0.0.0.0", "--port", "8000"]
