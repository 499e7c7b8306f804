# The cloud service's image (ingest, API, job worker): `docker compose up` builds it.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY pli pli
COPY comms comms
COPY edge edge
COPY training training
COPY annotation annotation
COPY cloud cloud
RUN pip install --no-cache-dir -c constraints.txt torch==2.14.1 torchvision==0.29.1 '.[cloud]'
USER nobody
ENV PLI_CLOUD_DIR=/tmp/pli-cloud
