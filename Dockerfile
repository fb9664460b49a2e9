FROM python:3.11-slim
WORKDIR /app
COPY . /app
RUN bash scripts/install.sh && ln -s /app/.venv/bin/sluice /usr/local/bin/sluice
ENV SLUICE_DATA_DIR=/data
EXPOSE 8000
CMD ["sluice", "serve", "--host", "0.0.0.0"]
