import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payments_project.settings")

logger = logging.getLogger(__name__)

app = Celery("payments_project")
# Every Celery option lives in Django settings under the CELERY_ prefix, so that one
# environment drives the web processes, the workers and beat alike.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def enqueue_on_commit(task, *args) -> None:
    """
    Send `task` once the current transaction commits (at once outside a transaction).

    A broker failure at that moment is logged, never raised: the change it follows is
    already committed, and the periodic sweeps find work whose task was never sent.
    """
    from django.db import transaction

    def send():
        try:
            task.delay(*args)
        except Exception:
            logger.exception("Could not enqueue %s%r; the sweep will retry it", task.name, args)

    transaction.on_commit(send)
