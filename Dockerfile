# Evolver image, CPU or GPU variant:
#   docker build -t evolver:cpu .
#   docker build -t evolver:gpu --build-arg VARIANT=gpu .
# The install step is scripts/bootstrap.sh, the same one `make run` / `make test` use; the GPU
# variant adds the vllm extra (its CUDA torch replaces the CPU pin).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md Makefile ./
COPY scripts/ scripts/
COPY proto/ proto/
COPY evolver/ evolver/
COPY services/ services/
COPY examples/ examples/
RUN bash scripts/bootstrap.sh
RUN if [ "$VARIANT" = "gpu" ]; then .venv/bin/python -m pip install ".[vllm]"; fi
# Bake the prepared policy model into the image so pods start without converting it.
RUN EVOLVER_MODEL_CACHE=/app/models .venv/bin/evolver models prepare

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --gid 10001 evolver && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin evolver
WORKDIR /app
COPY --from=build --chown=10001:10001 /app /app
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 EVOLVER_MODEL_CACHE=/app/models HF_HUB_OFFLINE=1
USER 10001:10001
EXPOSE 50051
ENTRYPOINT ["/app/.venv/bin/python"]
CMD ["-m", "evolver.cli", "--help"]
