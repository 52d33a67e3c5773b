# perfgen: one image for every perfgen service of docker-compose.yml (exporter,
# simulator, generator); the command picks the role, e.g.
#   docker run --rm perfgen:local exporter --config /etc/terraphim/config.toml --listen 0.0.0.0:9470
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# .dockerignore keeps tests, dashboards and deployment files out: the image holds only
# what `pip install .` packages, and a dashboard edit does not rebuild it.
COPY . .
RUN pip install . \
    && rm -rf /src

# Not root: the exporter holds provider API keys and talks to the network.
# /etc/terraphim is where compose mounts the proxy config volume; a named volume copies
# this directory's ownership on first use, so the generator may rewrite the file.
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent perfgen \
    && mkdir -p /etc/terraphim \
    && chown perfgen /etc/terraphim
USER perfgen
WORKDIR /etc/terraphim

# exporter, simulator, generator /metrics
EXPOSE 9470 8700 9471

ENTRYPOINT ["perfgen"]
CMD ["--help"]
