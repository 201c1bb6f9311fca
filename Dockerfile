# banditloop service image.
#
#   docker build -t banditloop .
#   docker run -p 8000:8000 -v banditloop-data:/app/data banditloop     # embedded SQLite
#
# Production: PostgreSQL and several workers (gunicorn + uvicorn workers, Prometheus
# multiprocess mode), as in deploy/docker-compose.yml:
#
#   docker run -p 8000:8000 -e BANDITLOOP_MODE=production \
#     -e BANDITLOOP_DATABASE_URL=postgresql+psycopg://user:pass@host/db \
#     -e BANDITLOOP_SIGNING_KEYS=k1:<32 random characters> \
#     banditloop serve --host 0.0.0.0 --workers 4
#
# BASE_IMAGE: any image with Python 3.11+ whose `python` and `pip` are first on PATH. The
# default is the official one; scripts/check-image.sh builds a local Debian base instead
# (for machines that reach no image registry) and passes it here.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone, so that a change to the source reuses this
# layer instead of downloading every wheel again. Every dependency ships wheels: no compiler
# in the image.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The migrations are found beside the `service` package (service/core/migrations.py), so the
# source stays in /app and is installed in editable mode.
COPY README.md alembic.ini ./
COPY alembic ./alembic
COPY bandits ./bandits
COPY variants ./variants
COPY service ./service
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /app --no-create-home banditloop \
    && mkdir -p /app/data \
    && chown banditloop /app/data

USER banditloop
# Embedded mode keeps its SQLite file and generated signing key here.
ENV BANDITLOOP_DATABASE_URL=sqlite:////app/data/banditloop.db \
    BANDITLOOP_PORT=8000 \
    MPLCONFIGDIR=/tmp/matplotlib
VOLUME ["/app/data"]
EXPOSE 8000

# `serve` listens on $BANDITLOOP_PORT unless --port says otherwise; the check follows it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('BANDITLOOP_PORT', '8000'), timeout=2)"]

# `serve` applies the migrations, then runs uvicorn (one worker) or, with --workers N,
# becomes the gunicorn master itself, so it stays PID 1 and gets the container's SIGTERM.
ENTRYPOINT ["banditloop"]
CMD ["serve", "--host", "0.0.0.0"]
