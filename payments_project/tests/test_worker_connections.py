"""
The Celery worker keeps its database connection between tasks, as a web process keeps it
between requests, instead of opening a new PostgreSQL session for every task.
"""

from types import SimpleNamespace

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from payments_project import celery as celery_module

pytestmark = pytest.mark.django_db(transaction=True)


def _task(eager=False):
    return SimpleNamespace(request=SimpleNamespace(is_eager=eager))


def _run_task_signals(fixup, task):
    fixup.on_task_prerun(sender=task)
    celery_module._database_connections_tidy(task=task)
    with connection.cursor() as cursor:  # the task's work
        cursor.execute("SELECT 1")
    fixup.on_task_postrun(sender=task)
    celery_module._database_connections_tidy(task=task)


def test_the_connection_outlives_a_task():
    fixup = DjangoWorkerFixup(celery_module.app)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        before = cursor.fetchone()[0]

    for _ in range(3):
        _run_task_signals(fixup, _task())

    assert connection.connection is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] == before


def test_a_connection_past_its_age_is_closed_after_a_task(monkeypatch):
    fixup = DjangoWorkerFixup(celery_module.app)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    monkeypatch.setattr(connection, "close_at", 0)  # as if CONN_MAX_AGE had passed

    celery_module._database_connections_tidy(task=_task())

    assert connection.connection is None
    _run_task_signals(fixup, _task())  # the next task simply connects again
