"""Celery tasks of subscriptions: the renewal job, thin over the services."""

import logging

from celery import shared_task

from subscriptions import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def subscriptions_run_due() -> dict:
    """
    Everything due now: renewals, dunning retries, period-end cancellations, expiries.
    Safe to run in several beat or worker processes at once (rows are claimed with SKIP
    LOCKED and re-checked under the lock); one subscription's failure does not stop the
    others, and it is retried on the next run.
    """
    done = failed = 0
    for subscription_id in services.subscriptions_due():
        try:
            if services.subscription_advance(subscription_id) is not None:
                done += 1
        except Exception:
            failed += 1
            logger.exception("Subscription %s: due work failed; retrying next run", subscription_id)
    return {"advanced": done, "failed": failed}
