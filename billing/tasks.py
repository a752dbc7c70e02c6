"""Celery tasks of billing: thin, keyed by ids, idempotent."""

import logging

from celery import shared_task

from billing import reconciliation

logger = logging.getLogger(__name__)

# Seconds before each new start of a run whose provider failed for now.
RECONCILIATION_RETRY_BACKOFF = [60, 300, 900]


@shared_task(bind=True, acks_late=True, max_retries=len(RECONCILIATION_RETRY_BACKOFF))
def reconciliation_run(self, run_id: str) -> str | None:
    """
    Execute one reconciliation run. A run already finished (or running elsewhere) is not
    run again; a provider outage starts it over later, a few times, then fails it.
    """
    retries = self.request.retries
    try:
        run = reconciliation.reconciliation_execute(
            run_id=run_id,
            retryable=not self.request.is_eager and retries < self.max_retries,
        )
    except reconciliation.ReconciliationRetry as exc:
        countdown = RECONCILIATION_RETRY_BACKOFF[
            min(retries, len(RECONCILIATION_RETRY_BACKOFF) - 1)
        ]
        raise self.retry(exc=exc, countdown=countdown) from None
    return run.status if run is not None else None


@shared_task(acks_late=True)
def reconciliation_nightly() -> list[str]:
    """Start yesterday's run for every enabled provider (beat, once a night)."""
    return [run.pk for run in reconciliation.reconciliation_nightly_start()]
