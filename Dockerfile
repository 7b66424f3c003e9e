# syntax=docker/dockerfile:1
# One image for every Python service in docker-compose.yml (migrate, worker, beat, web):
# the same installed package, started with a different command.

# Build stage: wheels for digest and all its dependencies, so the runtime stage
# needs neither a compiler nor the source tree.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY digest ./digest
COPY workers ./workers
COPY templates ./templates
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A regular (not editable) install from the wheels; time zones come from the
# tzdata wheel, so no Debian packages are needed.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels digest-papers

# Everything runs as an unprivileged user that owns only its state directory:
# the outbox (when no SMTP server is set) and celery beat's schedule file.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /var/lib/digest \
        --shell /usr/sbin/nologin digest \
    && mkdir -p /var/lib/digest/outbox /var/lib/digest/beat \
    && chown -R digest:digest /var/lib/digest
ENV HOME=/var/lib/digest \
    DIGEST_OUTBOX=/var/lib/digest/outbox
WORKDIR /var/lib/digest
# Numeric, so orchestrators can verify "not root" without reading /etc/passwd.
USER 10001:10001

# gunicorn serves digest.web:create_app() here (the `web` service).
EXPOSE 8000
CMD ["digest", "--help"]
