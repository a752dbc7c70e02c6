import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payments_project.settings")

app = Celery("payments_project")
# Every Celery option lives in Django settings under the CELERY_ prefix, so that one
# environment drives the web processes, the workers and beat alike.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
