# Orion Operator: the operator and its backup/restore Jobs run from this one image.
# PostgreSQL client tools 17 (pg_dump, pg_restore, psql) from Debian 13's own packages: a client
# dumps servers of its own major version and older, so keep it at or above the server's version.
ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=trixie

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# The package and all its dependencies as wheels: the final stage installs them offline.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}
ARG PG_MAJOR=17
RUN apt-get update \
    && apt-get install -y --no-install-recommends "postgresql-client-${PG_MAJOR}" \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels orion-operator && rm -rf /wheels
# A fixed numeric non-root user, so runAsNonRoot can check it without a name lookup.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin orion
USER 10001
ENV PYTHONUNBUFFERED=1 PG_BINDIR=/usr/lib/postgresql/${PG_MAJOR}/bin
EXPOSE 8080 8081
ENTRYPOINT ["orion-operator"]
CMD ["run", "--liveness", "http://0.0.0.0:8081/healthz", "--log-format", "json"]
