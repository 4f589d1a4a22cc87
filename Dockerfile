# One image for every benchbus service and both emulators; docker-compose.yml picks the command per service.
FROM node:20-bookworm-slim AS dashboard
WORKDIR /app
COPY services/websocket-gateway/dashboard/ services/websocket-gateway/dashboard/
RUN if [ -f services/websocket-gateway/dashboard/package-lock.json ]; then \
        cd services/websocket-gateway/dashboard && npm ci --omit=dev --no-audit --no-fund; fi

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
# Debian's Mosquitto: the lab's central broker runs from this image (docker-compose.lab.yml), which needs the broker,
# mosquitto_passwd to hash the passwords `benchbus lab access` generates, and mosquitto_sub for its health check.
RUN apt-get update && apt-get install -y --no-install-recommends mosquitto mosquitto-clients \
    && rm -rf /var/lib/apt/lists/*
COPY . /app
COPY --from=dashboard /app/services/websocket-gateway/dashboard/ /app/services/websocket-gateway/dashboard/
# Editable installs keep the repository layout, so services find shared-data/ where the code expects it.
RUN pip install --no-cache-dir -e bus-schemas -e services/common -e shared-data \
    && for project in services/*/pyproject.toml; do \
         dir=$(dirname "$project"); [ "$dir" = services/common ] || pip install --no-cache-dir -e "$dir"; \
       done
# Editable installs leave our modules uncompiled, and PYTHONDONTWRITEBYTECODE (above) keeps every service process from
# caching its compilation: each would compile them again at every start, and keep the compiler's peak in its RSS
# (issue 21). Compile them once here, into the image.
RUN for init in bus-schemas/*/__init__.py shared-data/*/__init__.py services/*/*/__init__.py; do \
         python -m compileall -q "$(dirname "$init")" >/dev/null || exit 1; \
       done
# The data folders exist in the image, owned by the service user: Docker fills a new named volume from the image's
# folder (contents and ownership), so the volumes mounted there start writable for the services, not root's.
RUN useradd --system --user-group --create-home --home-dir /data benchbus \
    && mkdir -p /data/gateway /data/calibration /data/scheduler /data/experiment /data/runner /data/recorder /data/update /data/update/slots /data/update/state /data/broker \
    && chown -R benchbus:benchbus /data
USER benchbus
