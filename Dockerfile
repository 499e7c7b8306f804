# The cloud service's images: EXTRA=cloud (default) for the API and the ingest, without torch;
# EXTRA=learn for the learning worker, with torch pinned first. `docker compose up` builds both.
FROM python:3.11-slim
ARG EXTRA=cloud
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY pli pli
COPY comms comms
COPY edge edge
COPY training training
COPY annotation annotation
COPY cloud cloud
RUN if [ "$EXTRA" = learn ]; then pip install --no-cache-dir -c constraints.txt torch==2.14.1 torchvision==0.29.1; fi \
    && pip install --no-cache-dir -c constraints.txt ".[$EXTRA]"
USER nobody
ENV PLI_CLOUD_DIR=/tmp/pli-cloud
