# syntax=docker/dockerfile:1
# The petitions app: wheels fetched and built in the first stage, installed offline
# in the second. docs/operations.md, "Containers", says how docker-compose.yml uses it.
#
#   docker build -t petitions .
#   docker run --rm -p 8000:8000 -e SECRET_KEY=... -e DATABASE_URL=... petitions
#
# Python 3.11 on linux/amd64: the platform requirements.lock was resolved for.

FROM python:3.11-slim AS wheels
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# The production dependencies, each file checked against its hash in the lock file;
# wheels only, so nothing is compiled and what stage two installs is what was hashed.
COPY requirements.lock ./
RUN pip download --require-hashes --only-binary=:all: --no-deps \
        --dest /wheels -r requirements.lock
# The app itself, as a wheel (templates and migrations inside).
COPY pyproject.toml README.md ./
COPY petitions ./petitions
COPY templates ./templates
COPY migrations ./migrations
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/var/lib/petitions
# No index: only the wheels of the first stage, the dependencies hash-checked once more.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    --mount=type=bind,source=requirements.lock,target=/tmp/requirements.lock \
    pip install --no-index --find-links=/wheels --require-hashes -r /tmp/requirements.lock \
    && pip install --no-index --no-deps /wheels/petitions-*.whl \
    && python -c "import uvloop, httptools, petitions.app"
# A user of its own, by number so that runAsNonRoot-style checks can see it is not root.
RUN groupadd --system --gid 10001 petitions \
    && useradd --system --uid 10001 --gid petitions --home-dir /var/lib/petitions \
        --create-home --shell /usr/sbin/nologin petitions
USER 10001:10001
WORKDIR /var/lib/petitions
EXPOSE 8000
# No curl in a slim image: Python asks /healthz (503 raises, so the check fails).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# Email goes out from a separate `petitions worker` (docker-compose.yml).
CMD ["petitions", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker", "--workers", "2"]
