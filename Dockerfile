# syntax=docker/dockerfile:1
# StreamSpace: one image for both processes and the migration Job:
#   streamspace operator | streamspace facade | streamspace migrate  (and `token` for admins)
#
# What the Helm chart relies on:
#   * it runs as the numeric non-root user 10001:10001 and needs no capabilities;
#   * nothing is written at runtime outside /tmp: the chart mounts an emptyDir at /tmp and sets
#     readOnlyRootFilesystem. Repositories are fetched to SYNC_WORK_DIR (/tmp/streamspace-repos),
#     the Kubernetes client's certificate files and ssh key material go to temporary files
#     there too; no bytecode is written (PYTHONDONTWRITEBYTECODE), HOME (/nonexistent) is never
#     read or written;
#   * ports: facade 8080 (PORT), operator liveness/readiness 8081 (--liveness), operator
#     metrics 9090 (METRICS_PORT).
#
# No container engine runs our tests, so tests/integration/test_image.py runs this file's
# build steps itself: the COPY lines of the builder and every RUN line marked "image-test",
# exactly as written (paths moved under a temporary root). Change a step here and that test
# runs the new one; add a RUN and it must be marked.
#
# Build: docker build --build-arg VERSION=0.1.0 --build-arg SOURCE=<repository URL> \
#          --build-arg REVISION=$(git rev-parse HEAD) -t streamspace:0.1.0 .

# A patch release of the slim Debian image; pin its digest too where builds must be
# reproducible (python:3.11.14-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The distribution's sources only: the developer tooling (devtools/), tests and docs stay out.
COPY pyproject.toml README.md ./
COPY core/ core/
COPY operator/ operator/
COPY facade/ facade/
# Our wheel and a wheel of every dependency, so the final stage installs without an index.
# image-test: wheels
RUN pip wheel --no-cache-dir --wheel-dir /wheels /src

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG SOURCE=""
ARG REVISION=""
LABEL org.opencontainers.image.title="StreamSpace" \
      org.opencontainers.image.description="Browser-streamed desktops and apps on Kubernetes: Kopf operator, REST/WebSocket facade, database migrations" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/streamspace/bin:$PATH \
    SYNC_WORK_DIR=/tmp/streamspace-repos

# openssh-client: repositories with ssh:// URLs are fetched through ssh. The user gets a passwd
# entry because ssh refuses to run for a UID without one; its home does not exist.
# image-test: skip (Debian packages and the user; the test runs the commands as an unprivileged
# user with a read-only HOME instead)
RUN apt-get update \
 && apt-get install --yes --no-install-recommends openssh-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 streamspace \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin streamspace

# image-test: venv
RUN python -m venv /opt/streamspace
# The wheels are mounted from the builder, not copied: no layer keeps them.
# image-test: install
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    /opt/streamspace/bin/pip install --no-cache-dir --no-index /wheels/*.whl

USER 10001:10001
EXPOSE 8080 8081 9090
ENTRYPOINT ["streamspace"]
CMD ["--help"]
