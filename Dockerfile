FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN bash scripts/install.sh && ln -s /app/.venv/bin/sluice /usr/local/bin/sluice
# Models exported at build time: the API and every run start without loading torch
# (docs/inference-backends.md).
ENV SLUICE_MODEL_EXPORTS_DIR=/app/model-exports
RUN SLUICE_DATA_DIR=/tmp/build-data sluice models --export && rm -rf /tmp/build-data
ENV SLUICE_DATA_DIR=/data
EXPOSE 8000
CMD ["sluice", "serve", "--host", "0.0.0.0"]
