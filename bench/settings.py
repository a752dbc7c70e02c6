"""
Settings of the bench's processes (gunicorn, the Celery worker, manage.py): the project's,
with the reference views' URLs added (`bench/urls.py`). Everything else comes from the
environment `bench/run.py` sets, exactly as in production.
"""

from payments_project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
