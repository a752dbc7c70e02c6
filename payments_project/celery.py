import logging
import logging.config
import os

from celery import Celery, signals

from payments_project.request_id import (
    request_id_get,
    request_id_new,
    request_id_reset,
    request_id_set,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payments_project.settings")

logger = logging.getLogger(__name__)

app = Celery("payments_project")
# Every Celery option lives in Django settings under the CELERY_ prefix, so that one
# environment drives the web processes, the workers and beat alike.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The message header that carries the request id from the web process to the worker.
REQUEST_ID_HEADER = "x_request_id"


def enqueue_on_commit(task, *args) -> None:
    """
    Send `task` once the current transaction commits (at once outside a transaction).

    A broker failure at that moment is logged, never raised: the change it follows is
    already committed, and the periodic sweeps find work whose task was never sent.
    """
    from django.db import transaction

    # The task belongs to the request that asked for it, even when the commit (and so the
    # sending) happens after that request's id has been reset.
    request_id = request_id_get()

    def send():
        token = request_id_set(request_id or request_id_get())
        try:
            task.delay(*args)
        except Exception:
            logger.exception("Could not enqueue %s%r; the sweep will retry it", task.name, args)
        finally:
            request_id_reset(token)

    transaction.on_commit(send)


@signals.setup_logging.connect
def _logging_from_django_settings(**kwargs) -> None:
    # Connected, so Celery leaves the root logger alone: the worker and beat write the
    # same JSON lines (masked, with request ids) as the web process.
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@signals.before_task_publish.connect
def _request_id_to_headers(headers=None, **kwargs) -> None:
    request_id = request_id_get()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


# Context tokens of the tasks running in this process, by task id, so that postrun restores
# exactly what prerun replaced (eager tasks nest inside the request that enqueued them).
_request_id_tokens = {}


@signals.task_prerun.connect
def _request_id_enter(task_id=None, task=None, **kwargs) -> None:
    request = task.request
    request_id = getattr(request, REQUEST_ID_HEADER, None) or (request.headers or {}).get(
        REQUEST_ID_HEADER
    )
    if not request_id:
        # An eager task runs inside its caller and keeps the caller's id; a task without
        # one in the worker (beat's sweeps) gets its own, so its lines still group.
        request_id = request_id_get() if request.is_eager else None
        request_id = request_id or request_id_new()
    _request_id_tokens[task_id] = request_id_set(request_id)


@signals.task_postrun.connect
def _request_id_leave(task_id=None, **kwargs) -> None:
    token = _request_id_tokens.pop(task_id, None)
    if token is not None:
        try:
            request_id_reset(token)
        except ValueError:  # set in another context (a pool thread): just clear it
            request_id_set(None)


# Database connections in the worker. Celery's Django fixup closes every connection before
# and after each task unless CELERY_DB_REUSE_MAX is set (settings set it out of reach), which
# costs a new PostgreSQL backend (a fork and a login) per task. Instead a task is treated
# like a request: before and after it, connections that are broken or older than
# CONN_MAX_AGE are closed (Django's own request signals do the same), the rest are kept.
@signals.task_prerun.connect
@signals.task_postrun.connect
def _database_connections_tidy(task=None, **kwargs) -> None:
    if task is not None and not task.request.is_eager:
        from django.db import close_old_connections

        close_old_connections()
