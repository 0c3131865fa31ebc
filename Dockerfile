# The service image. Its entry point is `campopt`: by default it serves the API; pass `worker`,
# `db migrate`, `policy train ...` or any other campopt command instead (compose.yaml does).
# The same image runs the MLflow tracking server (`--entrypoint mlflow`), which is one of its
# dependencies.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY optimizer optimizer
COPY campaign_db campaign_db
COPY api api
COPY offline_eval offline_eval
COPY examples examples
RUN pip install . && useradd --create-home --uid 10001 campopt

USER campopt
WORKDIR /home/campopt
# Local state (SQLite, a local MLflow store) only when no database or tracking server is set.
# The example catalog is what `campopt demo` uses; load a catalog of your own with
# `campopt catalog load <mounted folder>`.
ENV CAMPOPT_DATA_DIR=/home/campopt/data \
    CAMPOPT_CATALOG_PATH=/app/examples/catalog
EXPOSE 8000
ENTRYPOINT ["campopt"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
