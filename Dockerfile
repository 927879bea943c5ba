# feed-monitor container image.
#
#   docker build -t feed-monitor .
#   docker run -d --name feed-monitor --stop-timeout 30 \
#     -v "$PWD/config:/config:ro" -v feed-monitor-data:/data feed-monitor
#
# /config holds monitor.yaml (mounted read-only; edits are reloaded), /data holds
# the SQLite database. docker-compose.yml runs it with PostgreSQL and Mailpit.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The daemon runs as this unprivileged user; it owns /data and nothing else.
RUN groupadd --system --gid 10001 feed-monitor \
 && useradd --system --uid 10001 --gid feed-monitor --home-dir /data --no-create-home \
            --shell /usr/sbin/nologin feed-monitor \
 && mkdir -p /config /data \
 && chown feed-monitor:feed-monitor /data

# The install is the README's own command, run in a copy of the repository in
# /app; the second step adds the PostgreSQL driver (the `postgres` extra). The
# code and the virtual environment stay owned by root: the daemon cannot change them.
WORKDIR /app
COPY . /app
RUN python3 -m venv .venv && .venv/bin/pip install -e . \
 && .venv/bin/pip install -e '.[postgres]' \
 && .venv/bin/feed-monitor --version

ENV PATH=/app/.venv/bin:$PATH \
    FEED_MONITOR_CONFIG=/config/monitor.yaml \
    FEED_MONITOR_HEALTH_URL=http://127.0.0.1:9321/healthz

# Run from / so the example config's relative paths land in the volumes:
# config/monitor.yaml is /config/monitor.yaml and sqlite:///data/feed-monitor.db
# is /data/feed-monitor.db.
WORKDIR /
USER feed-monitor
VOLUME ["/config", "/data"]
# /healthz and /metrics; set http.listen: 0.0.0.0:9321 in the config to reach
# them from outside the container (the health check below works either way).
EXPOSE 9321

# SIGTERM stops the daemon gracefully (it finishes in-flight work for --grace
# seconds, 20 by default, and exits 0): give it longer than that to stop
# (docker run --stop-timeout 30, compose stop_grace_period: 30s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['FEED_MONITOR_HEALTH_URL'], timeout=4)"]

ENTRYPOINT ["feed-monitor"]
CMD ["run", "-c", "/config/monitor.yaml"]
