# The production image: gunicorn serves the web process; the same image runs the Celery
# worker and beat with another command (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

# WeasyPrint (invoice PDFs) loads Pango, HarfBuzz and fontconfig from the system, and the
# invoice template prints in DejaVu Sans (Cyrillic included). The same list as
# scripts/ensure_pdf_libs.sh.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
        libjpeg62-turbo libopenjp2-7 libffi8 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Static files are collected at build time and served by WhiteNoise from STATIC_ROOT.
RUN DJANGO_ENV_FILE= DEBUG=false SECRET_KEY=build-time-collectstatic-only \
    python manage.py collectstatic --noinput --verbosity 0 \
    && chown -R app:app /app

# Prometheus multiprocess mode: the processes of one container (gunicorn workers, the Celery
# pool) write their counts here and a scrape adds them up. gunicorn and the worker empty it
# when they start; docker-compose.yml mounts a fresh tmpfs over it as well.
RUN mkdir -p /tmp/prometheus && chown app:app /tmp/prometheus
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

USER app
ENV WHITENOISE_USE_FINDERS=false
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"

CMD ["gunicorn", "--config", "gunicorn.conf.py", "payments_project.wsgi:application"]
