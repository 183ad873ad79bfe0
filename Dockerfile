# syntax=docker/dockerfile:1
# CPU image by default. GPU variant:
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t deepfake-detector:gpu .
# The demo .mar is built into the image; mount your own store over /srv/model_store to serve other archives.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# EXTRA_WHEELS: one more place pip takes wheels from (--find-links: a folder mounted into the build, or a URL),
# e.g. a local torch wheel; empty (the default): none. An empty TORCH_INDEX leaves PyTorch's index out.
ARG EXTRA_WHEELS=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# g++: pdqhash (the PDQ perceptual hash of the record store) builds from its sdist.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++=4:12.* \
    && rm -rf /var/lib/apt/lists/* \
    && python -m venv /opt/venv
COPY pyproject.toml constraints.txt ./
RUN /opt/venv/bin/pip install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} \
    ${EXTRA_WHEELS:+--find-links "$EXTRA_WHEELS"} -c constraints.txt .
COPY handler/ handler/
COPY deepfake_service/ deepfake_service/
COPY scripts/ scripts/
COPY config/ config/
COPY page/ page/
RUN /opt/venv/bin/python -m scripts.fetch_face_detector \
    && /opt/venv/bin/python -m scripts.demo_checkpoint --output checkpoints/demo \
    && /opt/venv/bin/python -m scripts.build_mar --checkpoint checkpoints/demo --export-dir /srv/model_store \
    && /opt/venv/bin/python -m scripts.kserve_layout --mar /srv/model_store/deepfake-detector.mar --config-only \
       --model-store-path /srv/model_store --output /srv/kserve \
    && sed 's#^inference_address=.*#inference_address=http://0.0.0.0:8080#' config/config.properties > /srv/config.properties

FROM ${PYTHON_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless=17.* \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 model-server \
    && install -d -o 1000 -g 1000 /home/model-server/records
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=1000:1000 /srv /srv
COPY --from=build /src/deepfake_service /app/deepfake_service
COPY --from=build /src/scripts /app/scripts
COPY --from=build /src/page /app/page
COPY --from=build /src/handler /app/handler
COPY --from=build /src/config /app/config
# The record store (docs/records.md): a SQLite file on a volume by default; for several replicas set
# DEEPFAKE_RECORDS_URL=postgresql+psycopg://user:password@host/db (docker run -e ...).
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app DEEPFAKE_RECORDS_URL=sqlite:////home/model-server/records/records.sqlite3
USER 1000:1000
VOLUME /home/model-server/records
WORKDIR /home/model-server
# 8080: the inference API. The upload page is off in the container: it holds the inference key, so it is
# published only on purpose, with an access control (docs/operations.md#security):
#   docker run -p 7860:7860 -v ./page-token:/run/secrets/page-token:ro IMAGE python -m scripts.serve run \
#     --config /srv/config.properties --model-store /srv/model_store --run-dir /home/model-server/run \
#     --page-host 0.0.0.0 --page-token-file /run/secrets/page-token
EXPOSE 8080
# TorchServe writes key_file.json (the tokens) into its run folder: /home/model-server/run. The probe reads
# the inference key there and calls /ping with it (token authorization stays on).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-m", "scripts.serve", "probe", "--run-dir", "/home/model-server/run"]
# `run` waits until the model is ready, and on SIGTERM (docker stop) lets accepted requests finish
# before stopping TorchServe, which would drop them; give it time: docker stop -t 60.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "scripts.serve", "run", "--config", "/srv/config.properties", "--model-store", "/srv/model_store", \
     "--run-dir", "/home/model-server/run", "--page-port", "0"]
