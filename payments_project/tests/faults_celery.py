"""
The Celery app as the fault tests run it in a real worker (`celery -A
payments_project.tests.faults_celery worker`): the project's own app and settings, with only
the broker's redelivery clock shortened. In production a message whose worker died unacked
comes back after `visibility_timeout` (an hour); here after `FAULTS_VISIBILITY_TIMEOUT`
seconds, looked for every second, so a test can watch it happen.
"""

import os

from django.conf import settings

from payments_project.celery import app

app.conf.broker_transport_options = {
    **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "visibility_timeout": float(os.environ.get("FAULTS_VISIBILITY_TIMEOUT", "3")),
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

__all__ = ["app"]
