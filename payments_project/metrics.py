"""
Prometheus metrics: what the service counts, and `GET /metrics`, where it is scraped.

Two kinds of numbers:

- Requests, per resolved URL route (the pattern, never the raw path, so the number of
  series stays bounded whatever clients send): `http_requests_total{route,method,status}`
  and `http_request_duration_seconds{route,method}` (RequestMetricsMiddleware).
- Business counters; one that follows a change in a transaction moves only once that
  commits, so a rolled-back change is never counted: payments created, succeeded, failed and
  canceled and refunds (through the one outcomes hook, `outcome_count`, plus
  `payment_created_count`), money processed and refunded, inbound webhooks received,
  merchant callback attempts, failed Celery tasks and idempotent replays.

Money counters (`payments_processed_amount_total`, `payments_refunded_amount_total`) are
kept in minor units, integers exactly representable in the float every Prometheus sample
is, and shown in major units per currency: the Decimal division happens at the exposition
edge (`_MajorUnits`), so cents never drift however many payments are added up.

With several processes (gunicorn workers, the Celery pool) prometheus_client's
multiprocess mode is on when PROMETHEUS_MULTIPROC_DIR is set: each process writes its
counts to files there, and a scrape of any one process adds up all of them. Without it
(the embedded default) the counts live in this process's memory.

Metrics never make the work they count fail: every update swallows and logs its own
errors, and none of them touches the database.
"""

import hmac
import logging
import os
import threading
import time
from decimal import Decimal
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from payments import money
from payments.errors import ErrorCode
from payments.exception_handlers import error_body
from payments.network import address_in, client_ip

logger = logging.getLogger(__name__)

# `*_created` timestamps are one more series per label set that no dashboard reads (and
# multiprocess mode cannot serve them anyway).
disable_created_metrics()

# --- What is counted ------------------------------------------------------------------

_MONEY_LABELS = ("provider", "currency", "livemode")
# gunicorn's timeout is 30 s: the last bucket is a request that was about to be killed.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by URL route, method and status code.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by URL route and method.",
    ["route", "method"],
    buckets=_LATENCY_BUCKETS,
)
PAYMENTS_CREATED = Counter("payments_created", "Payments created.", _MONEY_LABELS)
PAYMENTS_SUCCEEDED = Counter("payments_succeeded", "Payments that succeeded.", _MONEY_LABELS)
PAYMENTS_FAILED = Counter("payments_failed", "Payments that failed.", _MONEY_LABELS)
PAYMENTS_CANCELED = Counter("payments_canceled", "Payments that were canceled.", _MONEY_LABELS)
PAYMENTS_PROCESSED_AMOUNT = Counter(
    "payments_processed_amount",
    "Money taken by succeeded payments (the captured amount), in major units of the currency.",
    _MONEY_LABELS,
)
REFUNDS = Counter(
    "refunds", "Refunds settled, by outcome (succeeded, failed).", [*_MONEY_LABELS, "outcome"]
)
PAYMENTS_REFUNDED_AMOUNT = Counter(
    "payments_refunded_amount",
    "Money given back by succeeded refunds, in major units of the currency.",
    _MONEY_LABELS,
)
WEBHOOKS_RECEIVED = Counter(
    "webhooks_received",
    "Provider webhooks received, by outcome (accepted, duplicate, rejected).",
    ["provider", "outcome"],
)
WEBHOOK_DELIVERIES = Counter(
    "webhook_deliveries",
    "Merchant callback attempts, by outcome: succeeded, retrying (failed, another attempt "
    "is scheduled) or failed (failed, retries exhausted).",
    ["outcome"],
)
CELERY_TASK_FAILURES = Counter(
    "celery_task_failures", "Celery tasks that ended in an error, by task name.", ["task"]
)
IDEMPOTENT_REPLAYS = Counter(
    "idempotent_replays", "Requests answered from a stored Idempotency-Key response."
)

# Kept in minor units, shown in major units (see the module docstring).
_MONEY_FAMILIES = {"payments_processed_amount", "payments_refunded_amount"}

_OUTCOME_COUNTERS = {
    "payment.succeeded": PAYMENTS_SUCCEEDED,
    "payment.failed": PAYMENTS_FAILED,
    "payment.canceled": PAYMENTS_CANCELED,
}
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
UNMATCHED_ROUTE = "<unmatched>"


# --- Counting -------------------------------------------------------------------------


def _count_on_commit(increment) -> None:
    """
    Run `increment` once the current transaction commits (at once outside one), and never
    let it, or the scheduling, raise into the work being counted.
    """

    def run():
        try:
            increment()
        except Exception:
            logger.exception("Could not update a metric")

    try:
        transaction.on_commit(run)
    except Exception:
        logger.exception("Could not schedule a metric update")


def _money_labels(provider: str, currency: str, livemode: bool) -> dict:
    return {"provider": provider, "currency": currency, "livemode": str(bool(livemode)).lower()}


def payment_created_count(payment) -> None:
    """Count a new payment when its transaction commits (called in `payment_create`)."""
    try:
        labels = _money_labels(payment.provider, payment.currency, payment.livemode)
    except Exception:
        logger.exception("Could not count a created payment")
        return
    _count_on_commit(lambda: PAYMENTS_CREATED.labels(**labels).inc())


def outcome_count(outcome) -> None:
    """
    The outcomes listener (payments/outcomes.py): payments succeeded, failed and canceled,
    refunds settled, and their money. Called inside the transaction of the change; counts
    when it commits.
    """
    try:
        increments = _outcome_increments(outcome)
    except Exception:
        logger.exception("Could not count outcome %s", getattr(outcome, "type", "?"))
        return
    if increments:
        _count_on_commit(
            lambda: [counter.labels(**labels).inc(by) for counter, labels, by in increments]
        )


def _outcome_increments(outcome) -> list[tuple[Counter, dict, int]]:
    """(counter, labels, increment) for each number `outcome` moves; money in minor units."""
    data = outcome.data
    if outcome.type in _OUTCOME_COUNTERS:
        labels = _money_labels(data["provider"], data["currency"], outcome.livemode)
        increments = [(_OUTCOME_COUNTERS[outcome.type], labels, 1)]
        if outcome.type == "payment.succeeded":
            taken = data.get("amount_captured") or data["amount"]
            minor = money.to_minor_units(Decimal(taken), data["currency"])
            increments.append((PAYMENTS_PROCESSED_AMOUNT, labels, minor))
        return increments
    if outcome.type in ("refund.succeeded", "refund.failed"):
        labels = _money_labels(data["provider"], data["currency"], outcome.livemode)
        result = outcome.type.removeprefix("refund.")
        increments = [(REFUNDS, {**labels, "outcome": result}, 1)]
        if result == "succeeded":
            minor = money.to_minor_units(Decimal(data["amount"]), data["currency"])
            increments.append((PAYMENTS_REFUNDED_AMOUNT, labels, minor))
        return increments
    return []


def webhook_received_count(provider: str, outcome: str) -> None:
    """
    Count an inbound webhook request: accepted, duplicate or rejected. At once: the webhook
    view runs outside a transaction, so what `webhook_receive` stored is already committed.
    """
    try:
        WEBHOOKS_RECEIVED.labels(provider=provider, outcome=outcome).inc()
    except Exception:
        logger.exception("Could not count a received webhook")


def delivery_settled_count(status: str) -> None:
    """Count a merchant callback attempt by the state it left its delivery in."""
    outcome = "retrying" if status == "pending" else status
    _count_on_commit(lambda: WEBHOOK_DELIVERIES.labels(outcome=outcome).inc())


def idempotent_replay_count() -> None:
    """Count a replayed answer. At once: a replay only reads, there is nothing to commit."""
    try:
        IDEMPOTENT_REPLAYS.inc()
    except Exception:
        logger.exception("Could not count an idempotent replay")


def task_failure_count(sender=None, **kwargs) -> None:
    """Celery's `task_failure` signal (in the process that ran the task)."""
    try:
        CELERY_TASK_FAILURES.labels(task=getattr(sender, "name", None) or "unknown").inc()
    except Exception:
        logger.exception("Could not count a task failure")


class RequestMetricsMiddleware:
    """
    Count and time every request by the URL route it resolved to. Outermost in MIDDLEWARE
    (settings, Metrics section), so the time covers the whole stack.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        try:
            match = getattr(request, "resolver_match", None)
            route = (match.route if match else "") or UNMATCHED_ROUTE
            method = request.method if request.method in _METHODS else "other"
            HTTP_REQUESTS.labels(route=route, method=method, status=str(response.status_code)).inc()
            HTTP_LATENCY.labels(route=route, method=method).observe(time.perf_counter() - started)
        except Exception:
            logger.exception("Could not count a request")
        return response


# --- Exposition -----------------------------------------------------------------------


class _MajorUnits:
    """`source`'s metric families, with the money counters turned into major units."""

    def __init__(self, source):
        self.source = source

    def collect(self):
        for family in self.source.collect():
            yield _in_major_units(family) if family.name in _MONEY_FAMILIES else family


def _in_major_units(family: Metric) -> Metric:
    converted = Metric(family.name, family.documentation, family.type, family.unit)
    for sample in family.samples:
        value = sample.value
        if sample.name.endswith("_total"):
            minor = int(value)  # a sum of whole minor units: exact below 2**53
            value = float(money.from_minor_units(minor, sample.labels["currency"]))
        converted.samples.append(sample._replace(value=value))
    return converted


def _multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def exposition_source():
    """What a scrape shows: every process's files in multiprocess mode, else this process."""
    if _multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=_multiprocess_dir())
        return _MajorUnits(registry)
    return _MajorUnits(REGISTRY)


def exposition(accept: str) -> tuple[bytes, str]:
    """The scrape's body and content type, in the format the scraper asked for."""
    encoder, content_type = choose_encoder(accept)
    return encoder(exposition_source()), content_type


def access_refusal(address: str, authorization: str) -> tuple[int, dict, dict] | None:
    """
    None when a scrape may see the metrics: it brings METRICS_TOKEN as a Bearer token, or
    comes from METRICS_ALLOWED_NETWORKS. Otherwise (status, error body, headers). A wrong
    token is refused even from an allowed network: a misconfigured scraper should hear it.
    """
    token = settings.METRICS_TOKEN
    if token and authorization:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), token.encode()
        ):
            return None
        return 401, error_body(ErrorCode.INVALID_API_KEY, "Invalid metrics token."), {}
    if address_in(address, settings.METRICS_ALLOWED_NETWORKS):
        return None
    if token:
        return (
            401,
            error_body(ErrorCode.AUTHENTICATION_REQUIRED, "The metrics need a Bearer token."),
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    return (
        403,
        error_body(ErrorCode.PERMISSION_DENIED, "Metrics are not served to this address."),
        {},
    )


@never_cache
def metrics_view(request):
    """`GET /metrics`: the Prometheus exposition, for allowed scrapers only."""
    refusal = access_refusal(client_ip(request), request.headers.get("Authorization", ""))
    if refusal is not None:
        status, body, headers = refusal
        return JsonResponse(body, status=status, headers=headers)
    if request.method not in ("GET", "HEAD"):
        message = f'Method "{request.method}" not allowed.'
        response = JsonResponse(error_body(ErrorCode.METHOD_NOT_ALLOWED, message), status=405)
        response["Allow"] = "GET, HEAD"
        return response
    body, content_type = exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)


# --- Processes ------------------------------------------------------------------------


def multiprocess_dir_clear(path: str) -> None:
    """
    Forget counts left by earlier runs: at service start, before the other processes of
    the service exist. This process's own files stay: it may have opened them already
    (a counter without labels does so when it is defined), and they hold nothing yet.
    """
    own = f"_{os.getpid()}.db"
    for leftover in Path(path).glob("*.db"):
        if not leftover.name.endswith(own):
            leftover.unlink(missing_ok=True)


def _worker_init(**kwargs) -> None:
    # The worker's main process, before its pool starts: this service's directory is ours.
    if _multiprocess_dir():
        multiprocess_dir_clear(_multiprocess_dir())


def _worker_process_shutdown(pid=None, **kwargs) -> None:
    if _multiprocess_dir():
        mark_process_dead(pid or os.getpid(), _multiprocess_dir())


def _worker_ready(**kwargs) -> None:
    if not settings.METRICS_WORKER_PORT:
        return
    try:
        worker_exporter_start(settings.METRICS_WORKER_PORT)
    except OSError:  # the port is taken: the worker works on, unscraped
        logger.exception("Could not serve worker metrics on port %s", settings.METRICS_WORKER_PORT)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes every few seconds are not news
        pass


def _worker_app(environ, start_response):
    """The Celery worker's `/metrics`, with the same access rules as the web's."""
    refusal = access_refusal(environ.get("REMOTE_ADDR", ""), environ.get("HTTP_AUTHORIZATION", ""))
    if refusal is None and environ.get("PATH_INFO") != "/metrics":
        refusal = 404, error_body(ErrorCode.RESOURCE_MISSING, "Only /metrics is here."), {}
    if refusal is not None:
        status, body, headers = refusal
        response = JsonResponse(body, status=status, headers=headers)
        start_response(f"{status} {response.reason_phrase}", list(response.items()))
        return [response.content]
    body, content_type = exposition(environ.get("HTTP_ACCEPT", ""))
    start_response("200 OK", [("Content-Type", content_type), ("Cache-Control", "no-store")])
    return [body]


def worker_exporter_start(port: int, host: str = "0.0.0.0") -> WSGIServer:
    """
    Serve `/metrics` from the Celery worker's main process (its tasks run in the pool,
    whose counts reach it through the multiprocess directory). Returns the server.
    """
    server = make_server(host, port, _worker_app, _ThreadingServer, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-exporter", daemon=True).start()
    logger.info("Serving worker metrics on %s:%s/metrics", host, server.server_port)
    return server


def install() -> None:
    """Register the outcomes listener and the Celery signals (from PaymentsConfig.ready)."""
    from celery import signals

    from payments import outcomes

    outcomes.listen(outcome_count)
    signals.task_failure.connect(task_failure_count, weak=False, dispatch_uid="metrics-failure")
    signals.worker_init.connect(_worker_init, weak=False, dispatch_uid="metrics-worker-init")
    signals.worker_ready.connect(_worker_ready, weak=False, dispatch_uid="metrics-worker-ready")
    signals.worker_process_shutdown.connect(
        _worker_process_shutdown, weak=False, dispatch_uid="metrics-process-shutdown"
    )
