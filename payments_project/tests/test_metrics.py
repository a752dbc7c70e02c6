"""
Prometheus metrics at `/metrics`: who may scrape them, what each counter counts (only what
committed), and the multiprocess sum over real gunicorn workers.

Counters live in this test process's registry and only grow, so every test compares the
scrape before and after what it does.
"""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from django.db import connection, transaction
from prometheus_client.parser import text_string_to_metric_families

from payments import services as payment_services
from payments.models import Payment
from payments.providers.base import ProviderDeclined, ProviderRefund
from payments.providers.sandbox import SandboxProvider
from payments.tests.factories import APIKeyFactory, PaymentFactory
from payments.tests.test_authentication import assert_error
from payments.tests.test_sandbox_flow import Buyer
from payments_project import metrics
from payments_project.celery import app as celery_app
from webhooks import callbacks
from webhooks.tests.test_inbox import _event as _sandbox_event
from webhooks.tests.test_inbox import _payment_with_checkout, _post, _sandbox_moves, _signed

BASE_DIR = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-0123456789abcdef"
SANDBOX_RUB = {"provider": "sandbox", "currency": "RUB", "livemode": "false"}

pytestmark = pytest.mark.django_db


# --- Helpers ------------------------------------------------------------------------------


def parse(text: str) -> dict:
    """Every sample of an exposition: {(name, ((label, value), …)): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: dict, after: dict, name: str, **labels) -> float:
    """How much one series grew between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def scrape(client):
    def scrape() -> dict:
        response = client.get("/metrics")
        assert response.status_code == 200, response.content
        return parse(response.content.decode())

    return scrape


def _transition(payment: Payment, to_status: str, **changes) -> Payment:
    """A payment changes state in its own transaction, as a provider webhook makes it."""
    with transaction.atomic():
        return payment_services.payment_transition(
            payment=payment_services.payment_lock(payment.pk),
            to_status=to_status,
            source="provider",
            **changes,
        )


def _paid(merchant, amount="599.00") -> Payment:
    return PaymentFactory(
        merchant=merchant,
        status="succeeded",
        amount=Decimal(amount),
        amount_captured=Decimal(amount),
        provider_payment_id="sbx_pay_metrics",
    )


@celery_app.task(name="payments_project.tests.test_metrics.explode")
def explode():
    raise RuntimeError("this task always fails")


# --- Access -------------------------------------------------------------------------------


def test_a_scrape_from_loopback_is_served_in_the_prometheus_text_format(client):
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-cache" in response["Cache-Control"]
    text = response.content.decode()
    for name in ("payments_created_total", "payments_succeeded_total", "refunds_total"):
        assert f"# TYPE {name} counter" in text


def test_openmetrics_is_served_when_asked_for(client):
    response = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")


def test_another_address_is_refused_in_the_error_shape(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.7")

    error = assert_error(response, 403, "permission_denied", "permission_error")
    assert "payments_created" not in response.content.decode()
    assert error["param"] is None


def test_the_token_lets_any_address_in(client, settings):
    settings.METRICS_TOKEN = TOKEN

    response = client.get(
        "/metrics", REMOTE_ADDR="203.0.113.7", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )

    assert response.status_code == 200
    assert b"payments_created_total" in response.content


def test_without_the_token_an_outside_address_is_told_to_authenticate(client, settings):
    settings.METRICS_TOKEN = TOKEN

    response = client.get("/metrics", REMOTE_ADDR="203.0.113.7")

    assert_error(response, 401, "authentication_required", "authentication_error")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("authorization", ["Bearer wrong-token-0123456789", f"Basic {TOKEN}"])
def test_a_wrong_token_is_refused_even_from_an_allowed_network(client, settings, authorization):
    settings.METRICS_TOKEN = TOKEN

    response = client.get("/metrics", HTTP_AUTHORIZATION=authorization)

    assert_error(response, 401, "invalid_api_key", "authentication_error")


def test_the_allowed_networks_are_a_setting(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "2001:db8::/32"]

    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="2001:db8::5").status_code == 200
    assert client.get("/metrics").status_code == 403  # loopback is no longer in the list


def test_an_empty_network_list_means_token_only(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = []
    settings.METRICS_TOKEN = TOKEN

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_the_address_is_the_one_behind_our_trusted_proxy(client, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]

    outside = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7")
    inside = client.get("/metrics", HTTP_X_FORWARDED_FOR="127.0.0.1")

    assert outside.status_code == 403
    assert inside.status_code == 200


def test_only_get_is_served(client):
    response = client.post("/metrics", {})

    assert_error(response, 405, "method_not_allowed", "invalid_request_error")
    assert response["Allow"] == "GET, HEAD"


def _settings_import(**env_overrides) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_overrides}
    return subprocess.run(
        [sys.executable, "-c", "import payments_project.settings"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "env, message",
    [
        ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,not-a-network"}, "METRICS_ALLOWED_NETWORKS"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN"),
        ({"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/prometheus"}, "PROMETHEUS_MULTIPROC_DIR"),
        ({"PROMETHEUS_MULTIPROC_DIR": ""}, "PROMETHEUS_MULTIPROC_DIR"),
        ({"METRICS_WORKER_PORT": "70000"}, "METRICS_WORKER_PORT"),
    ],
)
def test_bad_settings_refuse_to_start(env, message):
    result = _settings_import(**env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_good_settings_start(tmp_path):
    result = _settings_import(
        METRICS_ALLOWED_NETWORKS="10.0.0.0/8,::1/128",
        METRICS_TOKEN=TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
        METRICS_WORKER_PORT="9100",
    )

    assert result.returncode == 0, result.stderr


# --- Requests -----------------------------------------------------------------------------


def test_requests_are_counted_by_route_never_by_raw_path(client, api, scrape):
    route = {"route": "api/v1/payments/<str:payment_id>", "method": "GET"}
    before = scrape()

    for payment_id in ("pay_metrics_one", "pay_metrics_two"):
        assert api.get(f"/api/v1/payments/{payment_id}").status_code == 404
    client.get("/no/such/page/pay_metrics_three")

    after = scrape()
    assert grew(before, after, "http_requests_total", **route, status="404") == 2
    assert grew(before, after, "http_request_duration_seconds_count", **route) == 2
    unmatched = {"route": metrics.UNMATCHED_ROUTE, "method": "GET", "status": "404"}
    assert grew(before, after, "http_requests_total", **unmatched) == 1
    assert not [key for key in after if "pay_metrics" in str(key)]


# --- Payments and refunds -----------------------------------------------------------------


def test_a_created_payment_is_counted_when_it_commits(
    api, scrape, django_capture_on_commit_callbacks
):
    before = scrape()

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/payments", {"amount": "599.00", "currency": "RUB"}, format="json"
        )

    assert response.status_code == 201, response.content
    after = scrape()
    assert grew(before, after, "payments_created_total", **SANDBOX_RUB) == 1


def test_a_rolled_back_payment_is_not_counted(merchant, scrape, django_capture_on_commit_callbacks):
    before = scrape()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks_run,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        payment_services.payment_create(merchant=merchant, amount="599.00", currency="RUB")
        payment_services.payment_create(merchant=merchant, amount="10.00", currency="RUB")
        raise RuntimeError("the request failed after creating them")

    assert not callbacks_run
    after = scrape()
    assert grew(before, after, "payments_created_total", **SANDBOX_RUB) == 0


def test_a_succeeded_payment_counts_once_with_its_captured_amount(
    merchant, scrape, django_capture_on_commit_callbacks
):
    payment = PaymentFactory(merchant=merchant, amount=Decimal("599.00"), capture=False)
    before = scrape()

    with django_capture_on_commit_callbacks(execute=True):
        payment = _transition(payment, "requires_capture")
        _transition(payment, "succeeded", amount_captured=Decimal("500.00"))

    after = scrape()
    assert grew(before, after, "payments_succeeded_total", **SANDBOX_RUB) == 1
    assert grew(before, after, "payments_processed_amount_total", **SANDBOX_RUB) == 500


@pytest.mark.parametrize(
    "amount, currency, times, total",
    [("0.10", "USD", 3, "0.3"), ("100", "JPY", 2, "200"), ("1.500", "KWD", 3, "4.5")],
)
def test_money_adds_up_exactly_in_major_units(
    merchant, scrape, django_capture_on_commit_callbacks, amount, currency, times, total
):
    labels = {"provider": "sandbox", "currency": currency, "livemode": "false"}
    baseline = value(scrape(), "payments_processed_amount_total", **labels)

    for _ in range(times):
        payment = PaymentFactory(merchant=merchant, amount=Decimal(amount), currency=currency)
        with django_capture_on_commit_callbacks(execute=True):
            _transition(payment, "succeeded", amount_captured=Decimal(amount))

    shown = value(scrape(), "payments_processed_amount_total", **labels)
    # 0.1 + 0.1 + 0.1 in floats is 0.30000000000000004; counted in cents it is 0.3.
    assert Decimal(repr(shown)) - Decimal(repr(baseline)) == Decimal(total)


def test_failed_and_canceled_payments_are_counted(
    merchant, scrape, django_capture_on_commit_callbacks
):
    before = scrape()

    with django_capture_on_commit_callbacks(execute=True):
        _transition(PaymentFactory(merchant=merchant), "failed")
        _transition(PaymentFactory(merchant=merchant), "canceled")

    after = scrape()
    for name in ("payments_failed_total", "payments_canceled_total"):
        assert grew(before, after, name, **SANDBOX_RUB) == 1
    assert grew(before, after, "payments_processed_amount_total", **SANDBOX_RUB) == 0


def test_a_succeeded_refund_is_counted_with_its_amount(
    merchant, scrape, django_capture_on_commit_callbacks
):
    payment = _paid(merchant)
    refund = payment_services.refund_create(payment=payment, amount="100.00", source="api")
    report = ProviderRefund(
        provider_refund_id="sbx_re_metrics",
        provider_payment_id="sbx_pay_metrics",
        status="succeeded",
        amount=Decimal("100.00"),
        currency="RUB",
        reference=refund.pk,
    )
    before = scrape()

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(2):  # a repeated report settles (and counts) once
            payment_services.refund_sync_from_provider(
                provider="sandbox", remote=report, source="provider"
            )

    after = scrape()
    succeeded = {**SANDBOX_RUB, "outcome": "succeeded"}
    assert grew(before, after, "refunds_total", **succeeded) == 1
    assert grew(before, after, "payments_refunded_amount_total", **SANDBOX_RUB) == 100


def test_a_failed_refund_is_counted_without_money(
    merchant, scrape, monkeypatch, django_capture_on_commit_callbacks
):
    def declined(self, *args, **kwargs):
        raise ProviderDeclined("card closed", code="charge_expired_for_refund")

    monkeypatch.setattr(SandboxProvider, "refund_create", declined)
    refund = payment_services.refund_create(payment=_paid(merchant), amount="50.00", source="api")
    before = scrape()

    with django_capture_on_commit_callbacks(execute=True):
        payment_services.refund_dispatch_start(refund_id=refund.pk)

    after = scrape()
    failed = {**SANDBOX_RUB, "outcome": "failed"}
    assert grew(before, after, "refunds_total", **failed) == 1
    assert grew(before, after, "payments_refunded_amount_total", **SANDBOX_RUB) == 0


# --- Webhooks, callbacks, tasks, replays --------------------------------------------------


def test_webhooks_received_are_counted_by_provider_and_outcome(
    client, merchant, scrape, django_capture_on_commit_callbacks
):
    payment = _payment_with_checkout(merchant)
    body, headers = _signed(
        _sandbox_event(_sandbox_moves(payment, "succeeded"), "payment.succeeded")
    )
    before = scrape()

    with django_capture_on_commit_callbacks(execute=True):
        assert _post(client, body, headers).status_code == 200
        assert _post(client, body, headers).status_code == 200  # the provider retried
        assert _post(client, body + " ", headers).status_code == 400  # not what was signed

    after = scrape()
    for outcome in ("accepted", "duplicate", "rejected"):
        labels = {"provider": "sandbox", "outcome": outcome}
        assert grew(before, after, "webhooks_received_total", **labels) == 1, outcome
    # …and the event it carried made the payment succeed, which counts too.
    assert grew(before, after, "payments_succeeded_total", **SANDBOX_RUB) == 1


def _delivery_outcomes(scrape_result: dict) -> dict:
    return {
        outcome: value(scrape_result, "webhook_deliveries_total", outcome=outcome)
        for outcome in ("succeeded", "retrying", "failed")
    }


@pytest.mark.parametrize(
    "answers, schedule, outcome",
    [((200,), None, "succeeded"), ((500,), [60], "retrying"), ((500,), [], "failed")],
)
def test_merchant_callback_attempts_are_counted_by_outcome(
    merchant, receivers, settings, scrape, django_capture_on_commit_callbacks,
    answers, schedule, outcome,
):  # fmt: skip
    if schedule is not None:
        settings.WEBHOOK_RETRY_SCHEDULE = schedule
    receiver = receivers(*answers)
    callbacks.endpoint_create(merchant=merchant, url=receiver.url, enabled_events=["*"])
    before = _delivery_outcomes(scrape())

    with django_capture_on_commit_callbacks(execute=True):
        _transition(PaymentFactory(merchant=merchant), "failed")

    assert len(receiver.received) == 1
    after = _delivery_outcomes(scrape())
    assert {name: after[name] - before[name] for name in after} == {
        name: 1 if name == outcome else 0 for name in after
    }


def test_failed_celery_tasks_are_counted_by_name(scrape):
    labels = {"task": "payments_project.tests.test_metrics.explode"}
    before = value(scrape(), "celery_task_failures_total", **labels)

    result = explode.delay()

    assert result.failed()
    assert value(scrape(), "celery_task_failures_total", **labels) - before == 1


def test_idempotent_replays_are_counted(api, scrape, django_capture_on_commit_callbacks):
    body = {"amount": "599.00", "currency": "RUB"}
    before = scrape()

    with django_capture_on_commit_callbacks(execute=True):
        first = api.post("/api/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
        replay = api.post("/api/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay["Idempotent-Replayed"] == "true"
    after = scrape()
    assert grew(before, after, "idempotent_replays_total") == 1
    # The replay created nothing, so it counts no payment.
    assert grew(before, after, "payments_created_total", **SANDBOX_RUB) == 1


# --- Metrics never break the work they count ----------------------------------------------


def test_a_broken_counter_does_not_fail_a_payment(
    api, merchant, monkeypatch, caplog, django_capture_on_commit_callbacks
):
    def broken(*args, **kwargs):
        raise OSError("the metrics directory is gone")

    monkeypatch.setattr(metrics.PAYMENTS_CREATED, "labels", broken)
    monkeypatch.setattr(metrics.PAYMENTS_SUCCEEDED, "labels", broken)
    monkeypatch.setattr(metrics, "_outcome_increments", broken)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/payments", {"amount": "599.00", "currency": "RUB"}, format="json"
        )
        payment = _transition(Payment.objects.get(pk=response.json()["id"]), "succeeded")

    assert response.status_code == 201
    assert Payment.objects.get(pk=payment.pk).status == "succeeded"
    assert "Could not update a metric" in caplog.text
    assert "Could not count outcome payment.succeeded" in caplog.text


# --- Processes ----------------------------------------------------------------------------


def test_the_worker_serves_its_own_metrics_with_the_same_rules(settings):
    server = metrics.worker_exporter_start(0, host="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        served = requests.get(f"{url}/metrics", timeout=5)
        elsewhere = requests.get(f"{url}/other", timeout=5)
        settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
        refused = requests.get(f"{url}/metrics", timeout=5)
        settings.METRICS_TOKEN = TOKEN
        with_token = requests.get(
            f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
        )
    finally:
        server.shutdown()
        server.server_close()

    assert served.status_code == 200
    assert "payments_created_total" in served.text
    assert elsewhere.status_code == 404
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert with_token.status_code == 200


def test_the_worker_starts_with_an_empty_metrics_directory(tmp_path, monkeypatch):
    (tmp_path / "counter_12345.db").write_bytes(b"left by the last run")
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"this process's open file")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    metrics._worker_init()

    assert sorted(p.name for p in tmp_path.iterdir()) == [f"counter_{os.getpid()}.db", "keep.txt"]


# --- Several gunicorn workers -------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _test_database_url() -> str:
    """DATABASE_URL, pointed at the test database this test runs against."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}"))


@pytest.fixture
def gunicorn(tmp_path):
    """The production web server, two workers, on the test database; yields (url, dir)."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"a previous run's counts")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "DB_CONN_MAX_AGE": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "PUBLIC_BASE_URL": url,
        "LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
         "payments_project.wsgi:application"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                if requests.get(f"{url}/health/live", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still loading the app
                pass
            assert time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.2)
        yield url, metrics_dir
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _scrape_over_http(url: str) -> dict:
    # A new connection each time, so that either worker may take it.
    response = requests.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


@pytest.mark.django_db(transaction=True)
def test_a_sandbox_payment_shows_in_metrics_scraped_from_two_gunicorn_workers(gunicorn, merchant):
    url, metrics_dir = gunicorn
    api_key = APIKeyFactory(merchant=merchant).raw_key
    assert "counter_1.db" not in os.listdir(metrics_dir)  # cleared when gunicorn started
    before = _scrape_over_http(url)
    assert value(before, "payments_created_total", **SANDBOX_RUB) == 0

    created = requests.post(
        f"{url}/api/v1/payments",
        json={"amount": "599.00", "currency": "RUB"},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    landing = Buyer().pay(payment["checkout_url"], "4242 4242 4242 4242")
    assert "Payment succeeded" in landing.text
    assert Payment.objects.get(pk=payment["id"]).status == "succeeded"

    # Scrape in parallel bursts until both workers have answered (each one that served a
    # request has its own files in the directory); every scrape must show the whole sum.
    scrapes, deadline = [], time.monotonic() + 30
    with ThreadPoolExecutor(max_workers=6) as pool:
        while True:
            scrapes += pool.map(lambda _: _scrape_over_http(url), range(6))
            serving = {name.split("_")[-1] for name in os.listdir(metrics_dir)
                       if name.startswith("histogram_")}  # fmt: skip
            if len(serving) >= 2 or time.monotonic() > deadline:
                break
    assert len(serving) == 2, serving
    for samples in scrapes:
        assert value(samples, "payments_created_total", **SANDBOX_RUB) == 1
        assert value(samples, "payments_succeeded_total", **SANDBOX_RUB) == 1
        assert value(samples, "payments_processed_amount_total", **SANDBOX_RUB) == 599.0
        webhook = {"provider": "sandbox", "outcome": "accepted"}
        assert value(samples, "webhooks_received_total", **webhook) == 1
    last = scrapes[-1]
    api_create = {"route": "api/v1/payments", "method": "POST", "status": "201"}
    assert value(last, "http_requests_total", **api_create) == 1
